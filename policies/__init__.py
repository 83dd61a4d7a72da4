"""Learned allocation policies: the RAMP-style SAC agent (env, training, shipped policies, --method rl)."""
