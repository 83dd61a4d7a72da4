"""Paper reproductions: each module defines `REPRODUCTIONS = {name: function}`.

A function takes no arguments and returns a dict with "ours" (computed from the paper's setup
with our models, never a constant), "published", "source" and "refs" (the keys, in
docs/references.md, of the documents the figure comes from), and optionally "quantity"
("time" or "energy"), "setup", "note", "same_setup_as" and "picked" (what a search chose). It never returns a label, a
tolerance or a miss: `experiments.reproduce` computes the label from the provenance of the
constants the function's cost models use. Cache with `hwmodels.provenance.cached`.
"""
