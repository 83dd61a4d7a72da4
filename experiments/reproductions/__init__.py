"""Paper reproductions: each module defines `REPRODUCTIONS = {name: function}`.

A function takes no arguments and returns a dict with "ours" (computed from the
paper's setup with our models, never a constant), "published", "source" and
optionally "setup" and "note".
"""
