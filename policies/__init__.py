"""Learned allocation policies: the RAMP-style SAC agent (env, training, shipped policies, --method rl)."""

TORCH_EXTRA = "rl"  # a missing torch in any policies module names the rl extra (quantcore.extras)
