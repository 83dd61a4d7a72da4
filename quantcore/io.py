"""Atomic output files and bounded, strict JSON/TOML input.

Outputs are written to a temporary file in the same folder and renamed into
place, so a failed or interrupted run never leaves a partial file behind; an output
that would replace one of the run's inputs, a device or a folder is refused.

Inputs are read through `read_input`: a regular file, under a size cap, with its
nesting depth bounded before a parser sees it (deep nesting exhausts the parsers'
recursion). Inside `quantcore.cli.run_cli` every input read is remembered so that
no output of the same run can overwrite it.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from quantcore.errors import QuantDSEError
from quantcore.limits import cap, over_cap

# ------------------------------------------------------------------ the run's inputs

#: (device, inode) and real path of every input read in the current CLI run; None outside run_cli
_inputs: dict | None = None


def begin_run() -> None:
    """Start remembering inputs (run_cli calls this)."""
    global _inputs
    _inputs = {}


def end_run() -> None:
    global _inputs
    _inputs = None


def note_input(path: str | os.PathLike) -> None:
    """Remember `path` as an input of this run, so no output may replace it."""
    if _inputs is None:
        return
    try:
        st = os.stat(path)
    except OSError:
        return
    _inputs[(st.st_dev, st.st_ino)] = os.path.realpath(path)


def _is_input(path: Path) -> bool:
    if not _inputs:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path) in _inputs.values()
    return (st.st_dev, st.st_ino) in _inputs or os.path.realpath(path) in _inputs.values()


# ------------------------------------------------------------------ output files

def check_output_path(path: str | os.PathLike) -> Path:
    """The output `path` as a Path, or a one-line error when it cannot be a new regular file."""
    text = os.fspath(path)
    if not str(text).strip():
        raise QuantDSEError("output path is empty: give a file name, e.g. --out plan.json")
    if str(text).endswith(("/", os.sep)):
        raise QuantDSEError(f"output path {text} ends with '/' (a folder): give a file path, e.g. {text}plan.json")
    target = Path(text)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise QuantDSEError(f"output folder {folder} does not exist: create it or choose another --out path")
    if target.is_dir():
        raise QuantDSEError(f"output path {target} is a folder: give a file path, e.g. {target / 'plan.json'}")
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise QuantDSEError(f"output path {target} exists and is not a regular file (a device, pipe or socket): "
                            "choose a file path")
    if _is_input(target):
        raise QuantDSEError(f"output path {target} is also an input of this run: choose another output path")
    return target


def check_outputs(outputs, inputs=()) -> None:
    """Before any work: each output (None = not given) can be written, and none is an input or another output.

    inputs: the paths the command line names (files or not); existing files among them are protected.
    """
    for path in inputs:
        if path is not None and os.path.isfile(str(path)):
            note_input(path)
    seen: set = set()
    for path in outputs:
        if path is None:
            continue
        target = check_output_path(path)
        key = os.path.realpath(target)
        if key in seen:
            raise QuantDSEError(f"two outputs of this run go to {target}: give each its own path")
        seen.add(key)


def atomic_write_text(path: str | os.PathLike, text: str, check: Callable[[Path], None] | None = None) -> None:
    """Write `text` to `path` via temp file + rename (never a partial file)."""
    atomic_write_bytes(path, text.encode("utf-8"), check)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, check: Callable[[Path], None] | None = None) -> None:
    """Write `data` to `path` via temp file + rename. `check(temp_path)` may reject the file before the rename."""
    atomic_write_files([(path, data)], check)


def atomic_write_files(items: Iterable[tuple[str | os.PathLike, bytes | str]],
                       check: Callable[[Path], None] | None = None) -> None:
    """Write several outputs all or none: every temp file is written before any is renamed into place.

    Any exit -- an error, Ctrl-C, SIGTERM (run_cli raises it as an exception) -- removes the temps.
    """
    items = list(items)
    check_outputs([p for p, _ in items])
    items = [(Path(p), d.encode("utf-8") if isinstance(d, str) else d) for p, d in items]
    temps: list[tuple[str, Path]] = []
    try:
        for target, data in items:
            _write_temp(target, data, temps)
        if check is not None:
            for tmp, _ in temps:
                check(Path(tmp))
        for tmp, target in temps:
            try:
                os.replace(tmp, target)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(target)) from None
    except BaseException as exc:
        for tmp, _ in temps:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError) and exc.filename in [t for t, _ in temps]:
            raise OSError(exc.errno, exc.strerror, str(dict(temps)[exc.filename])) from None  # name the target
        raise


def _write_temp(target: Path, data: bytes, temps: list) -> None:
    """Write and sync a temp file beside `target`, listed in `temps` before any signal can intervene."""
    folder = target.parent if str(target.parent) else Path(".")
    blocked = _block_signals()
    try:  # the prefix is cut so a long (but legal) target name still leaves room for the temp's suffix
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:80]}.", suffix=".tmp", dir=folder)
        temps.append((tmp, target))
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # the folder exists (checked) but takes no new files: /proc, /sys
            raise OSError(errno.EINVAL, f"cannot create a file in {folder}", str(target)) from None
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    finally:
        _unblock_signals(blocked)  # a signal that came meanwhile is raised now, with the temp listed
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a plan is read by other tools and users
    with os.fdopen(fd, "wb") as handle:
        view = memoryview(data)
        for start in range(0, len(view), 1 << 24):  # chunks: a signal is handled between them
            handle.write(view[start:start + (1 << 24)])
        handle.flush()
        os.fsync(handle.fileno())


def _block_signals():
    """Hold SIGINT and SIGTERM (main thread, POSIX) for the few steps that must not be split."""
    import signal
    import threading

    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _unblock_signals(previous) -> None:
    import signal

    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def dumps(obj: Any) -> str:
    """Deterministic JSON text (sorted keys off: callers order their dicts)."""
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"


# ------------------------------------------------------------------ input files

def read_input(path: str | os.PathLike, what: str, cap_name: str = "json_bytes", note: bool = True) -> bytes:
    """The bytes of an input file: it must be a regular file no larger than the cap `cap_name`.

    A missing file is a one-line error; other OSErrors (permissions, loops) reach run_cli.
    note=False: a file the run may rewrite itself (a cache), not protected from its outputs.
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise QuantDSEError(f"{what} {p} not found: check the path") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise QuantDSEError(f"{what} {p} is {kind}: give the path of a file")
    if st.st_size > cap(cap_name):
        raise over_cap(cap_name, f"{what} {p} ({st.st_size:,} bytes)")
    data = read_bounded(p, cap(cap_name))
    if len(data) > cap(cap_name):  # grew while we read it
        raise over_cap(cap_name, f"{what} {p} (over {cap(cap_name):,} bytes)")
    if note:
        note_input(p)
    return data


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(text: str, limit: int = 80) -> str:
    """`text` (a name from an input file) as one plain file-name part: no separators, NUL or
    control bytes, no leading dot, at most `limit` characters; never empty."""
    name = _UNSAFE.sub("_", str(text)).lstrip(".")[:limit]
    return name if name.strip("_") else "unnamed"


def path_inside(text: str, folder: str | os.PathLike, what: str) -> Path:
    """A relative path named inside an untrusted file, resolved against that file's `folder`;
    refused unless it stays there (no absolute path, no `..` out, no symbolic link out)."""
    candidate = Path(text)
    if not str(text).strip() or "\0" in str(text):
        raise QuantDSEError(f"{what} {str(text)[:60]!r} is not a path: give a file name beside the file that names it")
    if candidate.is_absolute():
        raise QuantDSEError(f"{what} {text} is an absolute path: only files in {folder} (the folder of the file "
                            "that names it) may be named")
    base = os.path.realpath(folder)
    target = Path(folder) / candidate
    if os.path.commonpath([base, os.path.realpath(target)]) != base:
        raise QuantDSEError(f"{what} {text} leads out of {folder} (the folder of the file that names it): "
                            "copy the file there and name it relative to it")
    return target


def read_bounded(path: str | os.PathLike, limit: int) -> bytes:
    """At most limit + 1 bytes of a file, in chunks: a raised cap never sizes one huge buffer.

    Opened with O_NONBLOCK, so a FIFO or device swapped in after a stat check never blocks the read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb", buffering=0) as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise QuantDSEError(f"{path} is not a regular file: give the path of a file")
        chunks, total = [], 0
        while total <= limit:
            chunk = handle.read(min(1 << 24, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    return b"".join(chunks)


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_TOML_SKIP = re.compile(rb"'''.*?'''|\"\"\"(?:[^\\\"]|\\.|\"(?!\"\"))*\"\"\"|'[^'\n]*'|\"[^\"\\\n]*(?:\\.[^\"\\\n]*)*\"|#[^\n]*",
                        re.S)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth(data: bytes, toml: bool = False) -> int:
    """Deepest nesting of [ and { outside strings (and comments, for TOML); linear time."""
    if data.count(b"[") + data.count(b"{") <= 1:
        return min(1, data.count(b"[") + data.count(b"{"))
    brackets = (_TOML_SKIP if toml else _JSON_STRING).sub(b"", data).translate(None, _NOT_BRACKET)
    if not brackets:
        return 0
    b = np.frombuffer(brackets, np.uint8)
    return int(np.cumsum(np.where((b == 91) | (b == 123), 1, -1), dtype=np.int64).max())


def check_depth(data: bytes, where: str, toml: bool = False) -> None:
    depth = nesting_depth(data, toml)
    if depth > cap("depth"):
        raise over_cap("depth", f"{where} nests {depth:,} levels deep, which")


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} overflows a float")
    return value


def parse_json(data: bytes | str, where: str) -> Any:
    """Strict JSON (no NaN/Infinity, no float overflow), depth-bounded; errors are one line naming `where`."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    check_depth(raw, where)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise QuantDSEError(f"{where} is not valid JSON ({why}): fix or regenerate the file") from None


def load_json(path: str | os.PathLike, what: str, note: bool = True) -> Any:
    """Read a JSON file; a missing, oversized, deep or malformed file is a one-line QuantDSEError."""
    return parse_json(read_input(path, what, note=note), f"{what} {Path(path)}")


def load_toml(path: str | os.PathLike, what: str) -> dict:
    """Read a TOML file (size and depth bounded); a malformed file is a one-line QuantDSEError."""
    import tomllib

    raw = read_input(path, what, "toml_bytes")
    where = f"{what} {Path(path)}"
    check_depth(raw, where, toml=True)
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise QuantDSEError(f"{where} is not valid TOML ({why}): fix the file") from None


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
