"""What the model is asked to do: the phase, batch and sequence of one pass."""
from __future__ import annotations

from dataclasses import dataclass

from quantcore.errors import QuantDSEError
from quantcore.limits import RANGES, check_int

PHASES = ("decode", "prefill")


@dataclass(frozen=True)
class Workload:
    """One forward pass.

    phase: "prefill" processes `seq` prompt tokens per sequence; "decode" is one
    generation step per sequence with a context of `seq` tokens in the KV cache.
    kv_bits: precision of the KV cache (attention operands).
    """

    phase: str = "decode"
    batch: int = 1
    seq: int = 2048
    kv_bits: int = 16

    def __post_init__(self):
        if self.phase not in PHASES:
            raise QuantDSEError(f"unknown phase {self.phase!r}: use one of {', '.join(PHASES)}")
        for field in ("batch", "seq", "kv_bits"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise QuantDSEError(f"--{field.replace('_', '-')} must be a positive integer, got {value!r}")
            check_int(value, f"--{field.replace('_', '-')}", *RANGES[field])
        if self.kv_bits > 32:
            raise QuantDSEError(f"--kv-bits must be at most 32, got {self.kv_bits}")

    @property
    def tokens(self) -> int:
        """Tokens that pass through each linear layer in this pass."""
        return self.batch * self.seq if self.phase == "prefill" else self.batch

    def as_dict(self) -> dict:
        return {"phase": self.phase, "batch": self.batch, "seq": self.seq, "kv_bits": self.kv_bits}
