"""quantdse: hardware-aware design-space exploration for quantized neural networks."""

__version__ = "0.1.0"
