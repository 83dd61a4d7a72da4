"""Timing real torch kernels, each batch in a child process so a crash loses nothing.

`torch._weight_int8pack_mm` segfaults on some shapes (REFERENCE.md, "Measured-kernel
pitfalls": M=64, K=1000, N=3072 on torch 2.13 CPU). So the parent never calls a kernel:
it starts `python -m hwmodels.measure --worker`, sends the job list on stdin and reads one
JSON line per measured shape. If the child dies, the first job it did not report is the
crasher: it is recorded in `crashed`, and a fresh child measures the rest.

Timing: weights are cycled through enough copies to exceed 1.5x the last-level cache
(a layer of a real model pass streams its weights from DRAM; a loop over one small
weight would time a cache-resident kernel); a gather reads random rows of a table 4x the
LLC with fresh indices per call, for the same reason. A few warm-up calls, then
`repeats` individually timed calls (at least `min_repeats`, until `target_s` is spent);
the median is kept. CUDA calls are timed with events after a synchronize.

The job `STREAM` times a STREAM-style copy of two buffers of 4x the LLC each: the
machine's DRAM bandwidth with these threads, which bounds the fitted bandwidths
(`hwmodels.fit`), so the GB/s the calibration reports is a physical quantity.

A kernel is named by what it runs; `KERNELS` gives the bytes it moves (to the fit) and,
in the worker only, builds the torch call (torch is imported lazily).
"""
from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

#: L3 size assumed when /sys does not say (bytes); 32 MiB is this machine's L3 (sysfs index3)
DEFAULT_LLC_BYTES = 32 << 20
#: fewest rows of the gathered table (`gather_rows` makes it 4x the LLC at least)
GATHER_ROWS = 8192
#: never allocate more than this for cold-cache weight copies (bytes)
MAX_COPY_BYTES = 160 << 20
#: at most this many weight copies: enough that even a 9 KiB weight (the smallest designed conv)
#: cycles through > 1.5x the LLC (a cap of 64 left weights under ~0.75 MB cache-resident: a cliff
#: in the data, not the machine)
MAX_COPIES = 8192
#: job name of the bandwidth probe (`time_stream`), measured by the same worker as the kernels
STREAM = "stream-copy"


@dataclass(frozen=True)
class Kernel:
    """A measured kernel: device, the torch op, and its bytes per element.

    Shapes are GEMM shapes M x K x N (weight K x N). Conv kernels take M = output pixels,
    K = Cin * kh * kw, N = Cout (im2col view); the gather reads M rows of N elements.
    """

    name: str
    device: str
    op: str            # mm | int8pack | intmm | int4pack | conv2d | gather
    weight_bytes: float  # bytes per weight element (int4: 0.5)
    act_bytes: float     # bytes per activation element in
    out_bytes: float     # bytes per output element
    group: int = 0       # int4 quantization group (adds a bf16 scale + zero per group)
    ksize: int = 0       # conv2d: kernel side (K = Cin * ksize^2, M = side^2 output pixels)
    dtype: str = "float32"

    def weights(self, m, k, n):
        """Bytes of the weight operand (with its scales); 0 for a gather (rows, not a matrix)."""
        if self.op == "gather":
            return 0.0 * m
        weights = k * n * self.weight_bytes + 0.0 * m
        if self.group:
            weights = weights + (k / self.group) * n * 4.0  # bf16 scale and zero per group
        if self.op in ("int8pack", "intmm"):
            weights = weights + n * 2.0  # per-channel scale
        return weights

    def bytes(self, m, k, n):
        """Bytes one call reads and writes (weights + activations in + outputs)."""
        if self.op == "gather":
            return m * n * (self.weight_bytes + self.out_bytes) + m * 8.0
        return self.weights(m, k, n) + m * k * self.act_bytes + m * n * self.out_bytes

    def flops(self, m, k, n):
        return 0.0 * m if self.op == "gather" else 2.0 * m * k * n


def _cpu_kernels() -> dict:
    ks = [Kernel("mm-fp32", "cpu", "mm", 4, 4, 4, dtype="float32"),
          Kernel("mm-bf16", "cpu", "mm", 2, 2, 2, dtype="bfloat16"),
          Kernel("int8pack-mm", "cpu", "int8pack", 1, 2, 2, dtype="bfloat16"),
          Kernel("int-mm", "cpu", "intmm", 1, 1, 4, dtype="int8"),
          *[Kernel(f"int4pack-mm-g{g}", "cpu", "int4pack", 0.5, 2, 2, group=g, dtype="bfloat16")
            for g in (32, 64, 128)],
          Kernel("conv3x3-fp32", "cpu", "conv2d", 4, 4, 4, dtype="float32", ksize=3),
          Kernel("conv3x3-bf16", "cpu", "conv2d", 2, 2, 2, dtype="bfloat16", ksize=3),
          Kernel("gather-bf16", "cpu", "gather", 2, 0, 2, dtype="bfloat16")]
    return {k.name: k for k in ks}


def _cuda_kernels() -> dict:
    ks = [Kernel("cuda-mm-fp16", "cuda", "mm", 2, 2, 2, dtype="float16"),
          Kernel("cuda-mm-bf16", "cuda", "mm", 2, 2, 2, dtype="bfloat16"),
          Kernel("cuda-int-mm", "cuda", "intmm", 1, 1, 4, dtype="int8"),
          *[Kernel(f"cuda-int4pack-mm-g{g}", "cuda", "int4pack", 0.5, 2, 2, group=g, dtype="bfloat16")
            for g in (32, 64, 128)]]
    return {k.name: k for k in ks}


KERNELS = {**_cpu_kernels(), **_cuda_kernels()}


@functools.lru_cache(maxsize=None)
def llc_bytes() -> int:
    """Last-level cache size from sysfs (bytes), or DEFAULT_LLC_BYTES.

    Cached: `gather_rows` asks once per index set (tens of thousands of times a
    calibration), and reading sysfs each time took a third of a quick pass.
    """
    base = "/sys/devices/system/cpu/cpu0/cache"
    best = 0
    try:
        for entry in os.listdir(base):
            try:
                with open(os.path.join(base, entry, "size")) as fh:
                    text = fh.read().strip().upper()
            except OSError:
                continue
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            number = text[:-1] if text[-1:] in "KMG" else text
            if number.isdigit():
                best = max(best, int(number) * scale)
    except OSError:
        pass
    return best or DEFAULT_LLC_BYTES


# ------------------------------------------------------------------ worker side (torch)

def _int4_pack(torch, n: int, k: int, group: int, device: str):
    """Random int4 weights packed for `_weight_int4pack_mm[_for_cpu]`, with scales and zeros.

    Layout found by experiment on torch 2.13 (and torch's test_linalg `_group_quantize_tensor`):
    codes are int32 [N, K] in 0..15; scales_and_zeros is [K/group, N, 2] bf16 and the kernel
    computes w = (code - 8) * scale + zero. CPU packs with `_convert_weight_to_int4pack_for_cpu(
    codes, 1)` (uint8 [N, K/2]); CUDA with `_convert_weight_to_int4pack(codes as uint8 pairs, 8)`.
    """
    codes = torch.randint(0, 16, (n, k), dtype=torch.int32, device=device)
    sz = torch.rand(k // group, n, 2, dtype=torch.bfloat16, device=device)
    if device == "cpu":
        return torch._convert_weight_to_int4pack_for_cpu(codes, 1), sz
    packed = (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8)
    return torch._convert_weight_to_int4pack(packed, 8), sz


def _weights(torch, kern: Kernel, m: int, k: int, n: int, device: str):
    """One copy of the weight operand(s) as a tuple, and a function (x, weights) -> output."""
    dt = getattr(torch, kern.dtype)
    if kern.op == "mm":
        return (torch.empty(k, n, dtype=dt, device=device).uniform_(-1, 1),), lambda x, w: torch.mm(x, w[0])
    if kern.op == "int8pack":
        w = torch.randint(-128, 128, (n, k), dtype=torch.int8, device=device)
        return (w, torch.rand(n, dtype=torch.bfloat16, device=device)), \
            lambda x, w: torch._weight_int8pack_mm(x, w[0], w[1])
    if kern.op == "intmm":
        return (torch.randint(-128, 128, (n, k), dtype=torch.int8, device=device).t(),), \
            lambda x, w: torch._int_mm(x, w[0])
    if kern.op == "int4pack":
        packed, sz = _int4_pack(torch, n, k, kern.group, device)
        g = kern.group
        if device == "cpu":
            return (packed, sz), lambda x, w: torch._weight_int4pack_mm_for_cpu(x, w[0], g, w[1])
        return (packed, sz), lambda x, w: torch._weight_int4pack_mm(x, w[0], g, w[1])
    if kern.op == "conv2d":
        ksz = kern.ksize
        w = torch.empty(n, k // (ksz * ksz), ksz, ksz, dtype=dt, device=device).uniform_(-1, 1)
        return (w,), lambda x, w: torch.nn.functional.conv2d(x, w[0], padding=ksz // 2)
    if kern.op == "gather":
        table = torch.empty(gather_rows(n, kern.weight_bytes), n, dtype=dt, device=device).fill_(0.5)
        return (table,), lambda x, w: torch.nn.functional.embedding(x, w[0])
    raise ValueError(kern.op)


def cache_bytes(device: str = "cpu") -> int:
    """The cache a cold-weight measurement must exceed: the CPU's LLC, or the GPU's L2 (on an
    H200 60 MB: one 4096 x 4096 bf16 weight, 32 MB, timed alone would be an L2 hit)."""
    if device == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(0).L2_cache_size)
    return llc_bytes()


def gather_rows(n: int, elem_bytes: float) -> int:
    """Rows of the gathered table: at least GATHER_ROWS and 4x the LLC, so random rows are cold
    (an LLM's embedding table, 0.25-2 GB, is far beyond the LLC; a table that fits would time
    cache hits, not the DRAM reads a real pass does)."""
    return max(GATHER_ROWS, int(4 * llc_bytes() // max(1.0, n * elem_bytes)))


def _activation(torch, kern: Kernel, m: int, k: int, device: str, kern_n: int = 0):
    if kern.op == "intmm":
        return torch.randint(-128, 128, (m, k), dtype=torch.int8, device=device)
    if kern.op == "conv2d":
        side = int(round(m ** 0.5))  # shapes are designed with M a square (stride 1, same padding)
        return torch.randn(1, k // kern.ksize ** 2, side, side, dtype=getattr(torch, kern.dtype), device=device)
    if kern.op == "gather":
        return torch.randint(0, gather_rows(kern_n, kern.weight_bytes), (m,), device=device)
    return torch.empty(m, k, dtype=getattr(torch, kern.dtype), device=device).uniform_(-1, 1)


def time_kernel(torch, kern: Kernel, m: int, k: int, n: int, target_s: float, min_repeats: int,
                max_repeats: int, cold_bytes: int) -> dict:
    """Median seconds of one call, weights cycled through cold-cache copies."""
    device = kern.device
    first, fn = _weights(torch, kern, m, k, n, device)
    per_copy = max(1, sum(t.numel() * t.element_size() for t in first))
    copies = 1 if kern.op == "gather" else int(max(1, min(cold_bytes, MAX_COPY_BYTES) // per_copy + 1))
    copies = min(copies, MAX_COPIES)
    sets = [first] + [tuple(t.clone() for t in first) for _ in range(copies - 1)]
    x = _activation(torch, kern, m, k, device, n)
    if kern.op == "gather":  # fresh row indices per call (one index set repeated would gather cached rows)
        per_call = max(1.0, m * n * kern.weight_bytes)
        xs = [x] + [_activation(torch, kern, m, k, device, n) for _ in range(min(MAX_COPIES, int(cold_bytes // per_call)))]
    else:
        xs = [x]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for w in sets[: min(copies, 4)]:  # warm-up: code paths, allocator, thread pool
        fn(xs[-1], w)
    sync()
    times: list[float] = []
    spent = 0.0
    i = 0
    while len(times) < max_repeats and (len(times) < min_repeats or spent < target_s):
        w = sets[i % copies]
        x = xs[i % len(xs)]
        i += 1
        dt = _timed(torch, device, lambda: fn(x, w))
        times.append(dt)
        spent += dt
    return {"kernel": kern.name, "shape": [m, k, n], "seconds": statistics.median(times), "repeats": len(times)}


def _timed(torch, device: str, call) -> float:
    """Seconds of one call: CUDA events after the queue is drained, else the wall clock."""
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def time_stream(torch, cold_bytes: int, target_s: float, min_repeats: int, max_repeats: int,
                device: str = "cpu") -> dict:
    """STREAM copy bandwidth (bytes/s, read + write counted once each, as STREAM does) from DRAM."""
    elems = max(1 << 20, int(cold_bytes * 8 // 3) // 4)  # 4x the LLC per buffer (cold_bytes = 1.5x LLC)
    src = torch.empty(elems, dtype=torch.float32, device=device).uniform_(-1, 1)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times: list[float] = []
    while len(times) < max_repeats and (len(times) < min_repeats or sum(times) < target_s):
        times.append(_timed(torch, device, lambda: dst.copy_(src)))
    seconds = statistics.median(times)
    return {"kernel": STREAM, "shape": [1, 1, elems], "seconds": seconds, "repeats": len(times),
            "bytes_per_s": 2.0 * elems * 4 / seconds}


def _worker() -> int:
    """Child process: read a job document on stdin, print one JSON line per measured shape."""
    job = json.loads(sys.stdin.read())
    import torch

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    torch.manual_seed(int(job.get("seed", 0)))
    for kernel, m, k, n in job["jobs"]:
        try:
            with torch.inference_mode():
                if kernel == STREAM:
                    row = time_stream(torch, job["cold_bytes"], job["target_s"], job["min_repeats"], job["max_repeats"],
                                      job.get("device", "cpu"))
                    print(json.dumps(row), flush=True)
                    continue
                row = time_kernel(torch, KERNELS[kernel], m, k, n, job["target_s"], job["min_repeats"],
                                  job["max_repeats"], job["cold_bytes"])
        except RuntimeError as exc:  # a shape the kernel rejects (e.g. CUDA _int_mm needs M > 16)
            row = {"kernel": kernel, "shape": [m, k, n], "error": str(exc).strip().splitlines()[0][:200]}
        print(json.dumps(row), flush=True)
    return 0


# ------------------------------------------------------------------ parent side

def measure(jobs: list, threads: int | None = None, target_s: float = 0.05, min_repeats: int = 5,
            max_repeats: int = 200, seed: int = 0, progress: bool = True, desc: str = "measuring",
            device: str = "cpu", cache: int | None = None):
    """Time `jobs` ([kernel, M, K, N] lists) in child processes.

    Returns (rows, crashed): rows are {"kernel", "shape", "seconds", "repeats"}; crashed lists
    the jobs during which a child died (its exit code in "returncode") or that the kernel
    rejected with a RuntimeError (returncode 0, the message in "stderr"). cache: the caller's
    `cache_bytes(device)`, if it has it (cold weights are 1.5x it).
    """
    from tqdm import tqdm

    remaining = [list(j) for j in jobs]
    rows: list[dict] = []
    crashed: list[dict] = []
    bar = tqdm(total=len(remaining), desc=desc, unit="shape", file=sys.stderr,
               disable=None if progress else True, leave=False)  # a bar only on a terminal
    cache = cache_bytes(device) if cache is None else cache
    doc = {"threads": threads, "target_s": target_s, "min_repeats": min_repeats, "max_repeats": max_repeats,
           "cold_bytes": 3 * cache // 2, "seed": seed, "device": device}
    try:
        while remaining:
            proc = subprocess.Popen([sys.executable, "-m", "hwmodels.measure", "--worker"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            proc.stdin.write(json.dumps({**doc, "jobs": remaining}))
            proc.stdin.close()
            done = 0
            for line in proc.stdout:
                if not line.startswith("{"):
                    continue
                row = json.loads(line)
                if "error" in row:  # rejected, not crashed: the child goes on
                    message = row.pop("error")
                    crashed.append({**row, "returncode": 0, "stderr": message})
                else:
                    rows.append(row)
                done += 1
                bar.update(1)
            err = proc.stderr.read()
            code = proc.wait()
            remaining = remaining[done:]
            if code == 0:
                break
            if not remaining:  # died after its last report: nothing lost
                break
            bad = remaining.pop(0)
            crashed.append({"kernel": bad[0], "shape": bad[1:], "returncode": code,
                            "stderr": err.strip().splitlines()[-1][:200] if err.strip() else ""})
            bar.update(1)
    finally:
        bar.close()
    return rows, crashed


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        raise SystemExit(_worker())
    print("internal worker of hwmodels.calibrate: run `python -m hwmodels.calibrate --hw local`", file=sys.stderr)
    raise SystemExit(2)
