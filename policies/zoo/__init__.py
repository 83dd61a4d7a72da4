"""Shipped policies: one folder per policy (policy.json + policy.safetensors)."""
