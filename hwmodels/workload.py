"""What the model is asked to do: the phase, batch and sequence of one pass, or one whole request.

The model kind decides what one pass is (`Workload.for_model`): a decoder runs one
decode step against a KV cache (or a prefill of the prompt), an encoder (BERT) one
forward pass over `seq` tokens with bidirectional attention, a CNN one forward pass
over a batch of images at its input resolution. A field left None takes the model
kind's default; a flag that does not apply to the model kind is a one-line error.

A decoder may also run a whole request (`generate`): a prefill of the `seq`-token prompt,
then one decode step per further output token, the KV cache growing by one token per step;
and it may be served by several devices (`devices`, `parallel`: hwmodels.parallel).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from quantcore.errors import QuantDSEError
from quantcore.limits import RANGES, check_int

PHASES = ("decode", "prefill", "generate", "forward", "denoise")
#: a decoder's defaults: one decode step with a 2048-token context, 16-bit KV cache
DECODER_DEFAULTS = {"phase": "decode", "batch": 1, "seq": 2048, "kv_bits": 16}
#: tokens a request generates when --output-len is not given (vLLM's benchmark_serving default)
DEFAULT_OUTPUT_LEN = 128
#: an encoder without max_position_embeddings in its config runs BERT's 512 positions
ENCODER_FALLBACK_SEQ = 512


@dataclass(frozen=True)
class Workload:
    """One forward pass.

    phase: "prefill" processes `seq` prompt tokens per sequence (causal attention);
    "decode" is one generation step per sequence with a context of `seq` tokens in the
    KV cache; "forward" is an encoder's or a CNN's one pass over all of its input
    (`seq` tokens with bidirectional attention, or `batch` images of `image_hw`).
    "generate" is one whole request: prefill of `seq` prompt tokens (the first output token),
    then `output_len` - 1 decode steps whose context grows from seq + 1 to seq + output_len - 1.
    kv_bits: precision of the KV cache (attention operands).
    devices, parallel: the devices serving the model and how it is split (tp: tensor, pp: pipeline).
    image_hw: a CNN's input resolution (then `seq` is 1: one "token" per image).

    `Workload()` is a decoder's decode step (what a bare GEMM is costed with); the
    CLIs build `Workload.unset()` and let `for_model` fill what the user left out.
    """

    phase: str | None = "decode"
    batch: int | None = 1
    seq: int | None = 2048
    kv_bits: int | None = 16
    image_hw: tuple | None = None
    steps: int | None = None  # diffusion: denoising steps per image
    cfg: bool | None = None  # diffusion: classifier-free guidance doubles the denoiser's batch
    output_len: int | None = None  # generate: tokens each sequence generates (the first from the prefill)
    devices: int | None = 1
    parallel: str | None = "tp"

    def __post_init__(self):
        if self.phase is not None and self.phase not in PHASES:
            raise QuantDSEError(f"unknown phase {self.phase!r}: use one of {', '.join(PHASES)}")
        if self.parallel is not None:
            from hwmodels.parallel import check_parallel

            check_parallel(self.devices or 1, self.parallel)
        for field in ("batch", "seq", "kv_bits", "steps", "output_len", "devices"):
            value = getattr(self, field)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise QuantDSEError(f"--{field.replace('_', '-')} must be a positive integer, got {value!r}")
            check_int(value, f"--{field.replace('_', '-')}", *RANGES[field])

    @classmethod
    def unset(cls, phase=None, batch=None, seq=None, kv_bits=None, steps=None, image_hw=None, output_len=None,
              devices=None, parallel=None) -> "Workload":
        """The workload as the user gave it: None where the model kind decides (one device, tensor parallel
        unless told)."""
        return cls(phase=phase, batch=batch, seq=seq, kv_bits=kv_bits, steps=steps, image_hw=image_hw,
                   output_len=output_len, devices=devices or 1, parallel=parallel or "tp")

    @property
    def tokens(self) -> int:
        """Tokens (images for a CNN) that pass through each linear layer in this pass (a request: its prefill)."""
        return self.batch * self.seq if self.phase in ("prefill", "forward", "generate") else self.batch

    @property
    def context(self) -> int:
        """Tokens the KV cache holds at the end of the pass (a request: prompt and output)."""
        return self.seq + self.output_len - 1 if self.phase == "generate" else self.seq

    @property
    def output_tokens(self) -> int:
        """Tokens the pass produces, what tokens/s counts: a decode step's batch, a prefill's prompt
        tokens, a request's generated tokens."""
        if self.phase == "generate":
            return self.batch * self.output_len
        return self.batch * self.seq if self.phase == "prefill" else self.batch

    def prefill_pass(self) -> "Workload":
        """A request's prefill as one pass."""
        return replace(self, phase="prefill", output_len=None)

    def decode_pass(self, context: int) -> "Workload":
        """One decode step of a request against a `context`-token KV cache."""
        return replace(self, phase="decode", seq=context, output_len=None)

    def for_model(self, graph, notes: list | None = None) -> "Workload":
        """This workload completed with the defaults of `graph`'s kind (config["arch"]).

        decoder: decode, batch 1, seq 2048 (or its max positions when fewer), 16-bit KV.
        encoder: forward over its max_position_embeddings tokens (the longest input it
        takes; pass --seq for your typical length); --phase decode is an error, prefill
        means the forward pass. cnn: forward over `batch` images at config["input_hw"];
        --phase decode is an error; --seq and --kv-bits do not apply (one workload may
        serve a CNN and a transformer in a sweep): they are ignored and `notes` says so.
        """
        arch = graph.config.get("arch", "decoder")
        name = graph.name
        if arch != "decoder" and (self.phase == "generate" or self.output_len is not None):
            raise QuantDSEError(f"{name} generates no tokens: --phase generate and --output-len apply to decoder LLMs")
        if arch != "decoder" and (self.devices or 1) > 1:
            raise QuantDSEError(f"--devices {self.devices}: serving on several devices is modelled for decoder LLMs, "
                                f"and {name} is not one: use --devices 1")
        if arch == "diffusion":
            from hwmodels.diffusion_ops import diffusion_workload

            return diffusion_workload(self, graph, notes)
        if self.steps is not None or (self.image_hw is not None and arch != "cnn"):
            raise QuantDSEError(f"{name} is not a diffusion pipeline: --steps and --resolution apply to "
                                "text-to-image models (e.g. --model flux.1-dev)")
        if arch == "cnn":
            if self.phase == "decode":
                raise QuantDSEError(f"{name} is a CNN: it runs one forward pass over a batch of images at its input "
                                    "resolution and has no decode step: drop --phase decode (--batch sets the "
                                    "number of images)")
            ignored = [f"--seq {self.seq}" for _ in [0] if self.seq not in (None, 1)]
            ignored += [f"--kv-bits {self.kv_bits}" for _ in [0] if self.kv_bits not in (None, 16)]
            if ignored and notes is not None:
                notes.append(f"{name} is a CNN: {', '.join(ignored)} does not apply to its images (ignored)")
            hw = tuple(int(x) for x in graph.config.get("input_hw") or ()) or None
            return Workload(phase="forward", batch=self.batch or 1, seq=1, kv_bits=16, image_hw=hw)
        if arch == "encoder":
            if self.phase == "decode":
                raise QuantDSEError(f"{name} is an encoder: it runs one forward pass over --seq tokens and has no "
                                    "decode step: drop --phase decode (or pass --phase prefill)")
            max_pos = graph.config.get("max_position_embeddings")
            if self.seq is not None and max_pos and self.seq > int(max_pos):
                raise QuantDSEError(f"--seq {self.seq} exceeds {name}'s {int(max_pos)} positions: "
                                    f"pass --seq {int(max_pos)} or less")
            seq = self.seq or int(max_pos or ENCODER_FALLBACK_SEQ)
            return Workload(phase="forward", batch=self.batch or 1, seq=seq, kv_bits=self.kv_bits or 16)
        defaults = dict(DECODER_DEFAULTS)
        max_pos = graph.config.get("max_position_embeddings")
        if max_pos:  # GPT-2 (1024) and small models cannot hold 2048 tokens
            defaults["seq"] = min(defaults["seq"], int(max_pos))
        defaults.update(devices=1, parallel="tp")
        filled = {k: (getattr(self, k) if getattr(self, k) is not None else v) for k, v in defaults.items()}
        if filled["phase"] == "forward":
            raise QuantDSEError(f"{name} is a decoder: use --phase decode, prefill or generate")
        if filled["phase"] == "generate":
            filled["output_len"] = self.output_len or DEFAULT_OUTPUT_LEN
        elif self.output_len is not None:
            raise QuantDSEError(f"--output-len applies to --phase generate (a whole request), not {filled['phase']}: "
                                "add --phase generate or drop --output-len")
        return replace(self, **filled)

    def as_dict(self) -> dict:
        """The plan's `workload`: the keys that apply to this kind of pass, and a sentence."""
        if self.phase == "denoise":
            out = {"phase": self.phase, "batch": self.batch, "steps": self.steps, "resolution": list(self.image_hw),
                   "cfg": self.cfg}
        elif self.image_hw is not None:
            out = {"phase": self.phase, "batch": self.batch, "input_hw": list(self.image_hw)}
        else:
            out = {"phase": self.phase, "batch": self.batch, "seq": self.seq, "kv_bits": self.kv_bits}
            if self.phase == "generate":
                out["output_len"] = self.output_len
            if (self.devices or 1) > 1:
                out.update(devices=self.devices, parallel=self.parallel)
        return {**out, "description": self.describe()}

    def describe(self) -> str:
        """The workload in words, as a plan header states it."""
        b = self.batch
        if self.phase == "denoise":
            size = "x".join(str(x) for x in self.image_hw)
            guide = "CFG doubles the denoiser's batch" if self.cfg else "no CFG batch"
            return (f"{b} image{'s' if b != 1 else ''} of {size}: {self.steps} denoising steps ({guide}), "
                    "text encoders and VAE decoder once")
        if self.image_hw is not None:
            size = "x".join(str(x) for x in self.image_hw)
            return f"one forward pass over {b} image{'s' if b != 1 else ''} of {size}"
        seqs = f"{b} sequence{'s' if b != 1 else ''}"
        if (self.devices or 1) > 1:
            how = "tensor" if self.parallel == "tp" else "pipeline"
            return f"{replace(self, devices=1).describe()}; on {self.devices} devices ({how} parallel)"
        if self.phase == "generate":
            return (f"a request of {seqs}: prefill of {self.seq} prompt tokens, then {self.output_len} output tokens "
                    f"each, {self.kv_bits}-bit KV cache")
        if self.phase == "forward":
            return f"one forward pass over {seqs} of {self.seq} tokens (bidirectional attention)"
        if self.phase == "prefill":
            return f"prefill of {seqs} of {self.seq} prompt tokens, {self.kv_bits}-bit KV cache"
        a = "an" if str(self.kv_bits).startswith("8") or self.kv_bits in (11, 18) else "a"
        return f"one decode step of {seqs}, {self.seq}-token context in {a} {self.kv_bits}-bit KV cache"


def add_serving_args(p: ArgumentParser) -> None:
    """--output-len --devices --parallel: a whole request, and the devices serving it (dse.search shares them)."""
    p.add_argument("--output-len", type=int, help="--phase generate: tokens each sequence generates (default 128)")
    p.add_argument("--devices", type=int, help="devices serving the model (default 1; their link comes from the spec)")
    p.add_argument("--parallel", choices=("tp", "pp"),
                   help="how --devices split the model: tp (tensor parallel, default) or pp (pipeline parallel)")
