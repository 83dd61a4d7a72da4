"""The release of quantdse, as plans record it (provenance.version)."""

__version__ = "0.1.0"
