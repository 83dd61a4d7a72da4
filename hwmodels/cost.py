"""`python -m hwmodels.cost`: predicted cost of one GEMM or one pass of a whole model.

    python -m hwmodels.cost --hw a100-80gb --gemm 1,4096,4096 --format int4-g128 --json
    python -m hwmodels.cost --hw u280 --model llama-2-7b --format int4-g128 --phase decode --seq 2048
    python -m hwmodels.cost --hw a100-40gb --model codellama-34b --format fp16 --phase generate --devices 2
    python -m hwmodels.cost --hw systolic --set rows=32 --set cols=32 --set dataflow=os --gemm 64,64,64 --format int8
"""
from __future__ import annotations

import math
import sys

from quantcore.io import dumps
from quantcore.cli import ArgumentParser, run_cli
from quantcore.errors import QuantDSEError
from quantcore.limits import RANGES
from hwmodels.memory import memory_doc
from hwmodels.ops import Ops
from hwmodels.registry import load_model
from hwmodels.wholemodel import model_cost
from hwmodels.workload import PHASES, Workload, add_serving_args


def _parse_gemm(text: str) -> tuple[int, int, int]:
    try:
        dims = tuple(int(x) for x in text.split(","))
    except ValueError:
        dims = ()
    lo, hi = RANGES["gemm"]
    if len(dims) != 3 or min(dims) < lo or max(dims) > hi:
        raise QuantDSEError(f"--gemm {text!r} must be three positive integers M,K,N, each at most {hi:,}, e.g. --gemm 1,4096,4096")
    return dims  # type: ignore[return-value]


def main(argv=None) -> int:
    p = ArgumentParser(prog="hwmodels.cost", description=__doc__.split("\n")[0])
    p.add_argument("--hw", required=True, help="target name or spec .toml path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--gemm", help="M,K,N: M tokens x K inputs x N outputs")
    what.add_argument("--model", help="catalog name, config.json or safetensors: one whole pass")
    p.add_argument("--format", required=True, help="weight format (python -m dse.formats), e.g. int4-g128-a8")
    p.add_argument("--phase", choices=PHASES, help="decode (default for a GEMM and decoders), prefill or generate "
                                                   "(a whole request); encoders and CNNs run one forward pass")
    p.add_argument("--batch", type=int, help="sequences or images per pass (default 1)")
    p.add_argument("--seq", type=int, help="prompt or context length (default 2048; encoders: their max positions)")
    p.add_argument("--kv-bits", type=int, help="KV cache precision (default 16)")
    add_serving_args(p)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from quantcore.formats import get_format

    fmt = get_format(args.format)
    asked = Workload.unset(phase=args.phase, batch=args.batch, seq=args.seq, kv_bits=args.kv_bits,
                           output_len=args.output_len, devices=args.devices, parallel=args.parallel)
    model = load_model(args.hw, args.overrides)
    if args.gemm:
        if asked.phase == "generate" or (asked.devices or 1) > 1 or asked.output_len:
            raise QuantDSEError("--phase generate, --output-len and --devices cost a whole model: use --model")
        workload = Workload(**{k: v for k, v in vars(asked).items() if v is not None})  # a decode step by default
        m, k, n = _parse_gemm(args.gemm)
        table = model.cost(Ops.gemm(m, k, n), [fmt], workload)
        if not table.supported[0, 0]:
            raise QuantDSEError(f"format {fmt.name} is not supported on {model.name}: pick another --format")
        result = {"hardware": model.name, "gemm": [m, k, n], "format": fmt.name, **table.row(0, 0)}
    else:
        from quantcore.models import load_graph

        graph = load_graph(args.model)
        for note in graph.notes:
            print(f"note: {note}", file=sys.stderr)
        workload = asked.for_model(graph)
        result = {"hardware": model.name, "model": graph.name, "format": fmt.name,
                  "workload": workload.as_dict(), **model_cost(model, graph, fmt, workload)}
        memory = memory_doc(model.spec, graph, fmt, workload)
        if memory is not None:
            result["memory"] = memory
    if not all(math.isfinite(result[k]) and result[k] >= 0 for k in ("cycles", "latency_s", "energy_j", "bytes")):
        raise QuantDSEError(f"predicted cost on {model.name} is not finite and non-negative: check --set values "
                            "and the model's config")
    if args.json:
        sys.stdout.write(dumps(result))
    else:
        for key, value in result.items():
            if key in ("breakdown", "memory"):
                if key == "memory":
                    print("memory (bytes; per device where several)")
                for bk, bv in value.items():
                    print(f"  {bk:28s} {bv:.6g}" if isinstance(bv, float) else f"  {bk:28s} {bv}")
            else:
                print(f"{key:30s} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
