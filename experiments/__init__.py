"""Co-design studies and reproductions of published results."""
