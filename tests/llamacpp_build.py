"""llama-quantize built from llama.cpp's source, for the slow export test; cached outside the clone.

The source is the llama-cpp-python sdist (it vendors llama.cpp under vendor/llama.cpp), fetched once
with pip, which is how a clean clone gets it:

    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d ~/.cache/quantdse/llama.cpp

The build goes to <cache>/llama.cpp/<sdist name>/build (cache: $QUANTDSE_CACHE_DIR, else
$XDG_CACHE_HOME/quantdse, else ~/.cache/quantdse) and is reused.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

SDIST = "llama_cpp_python-0.3.36"
FETCH = (f"pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "
         f"~/.cache/quantdse/llama.cpp")


def cache_root() -> Path:
    if os.environ.get("QUANTDSE_LLAMACPP_DIR"):
        return Path(os.environ["QUANTDSE_LLAMACPP_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "quantdse" / "llama.cpp"


def missing() -> str | None:
    """Why llama-quantize cannot be built here (None: it can)."""
    for tool in ("cmake", "c++", "cc"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH (a C/C++ compiler and cmake build llama-quantize)"
    if not (cache_root() / f"{SDIST}.tar.gz").is_file() and not (cache_root() / SDIST).is_dir():
        return f"llama.cpp's source is not in {cache_root()}: {FETCH}"
    return None


def llama_quantize() -> Path:
    """The llama-quantize binary (built on first use) and the vendored gguf-py beside it."""
    root = cache_root()
    src = root / SDIST
    if not src.is_dir():
        with tarfile.open(root / f"{SDIST}.tar.gz") as tar:
            tar.extractall(root, filter="data")
    source, build = src / "vendor" / "llama.cpp", src / "build"
    binary = build / "bin" / "llama-quantize"
    if not binary.is_file():
        subprocess.run(["cmake", "-S", str(source), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                        "-DLLAMA_CURL=OFF", "-DGGML_NATIVE=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                        "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DGGML_OPENMP=OFF"],
                       check=True, capture_output=True)
        subprocess.run(["cmake", "--build", str(build), "--target", "llama-quantize", "-j", "2"],
                       check=True, capture_output=True)
    return binary


if __name__ == "__main__":
    print(missing() or llama_quantize())
