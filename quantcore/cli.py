"""The CLI boundary: bad input becomes one line on stderr and exit code 2.

`run_cli` is the one place that turns what a user's input can cause into that line:
QuantDSEError, any OSError (`error: <path>: <strerror>: <fix>`), input nested too deep
for a parser (RecursionError) and input too large for memory (MemoryError). Ctrl-C exits
130 and SIGTERM 143, quietly; temporary output files are removed on every path out
(quantcore.io's writers clean up on any exception, and SIGTERM is raised as one).
Library warnings reach stderr only when it is a terminal (`quiet_unless_terminal`).
"""
from __future__ import annotations

import errno
import signal
import sys
import threading
from typing import Callable

from quantcore.errors import QuantDSEError

#: what to do about an OSError, by errno; the default is to check the path
_FIXES = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.ENAMETOOLONG: "use a shorter file name",
    errno.ENOSPC: "free some disk space or choose another folder",
    errno.EDQUOT: "free some disk space or choose another folder",
    errno.ELOOP: "a symbolic link points back to itself: fix the link",
    errno.EISDIR: "it is a folder: give a file path",
    errno.ENOTDIR: "a part of the path is not a folder: check the path",
    errno.ENOENT: "check the path",
    errno.EXDEV: "choose an output path on the same file system",
    errno.EBUSY: "the file is in use: choose another path",
    errno.EINVAL: "this file system does not allow it: choose a regular folder",
}


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that `finally` blocks and temp-file cleanup run."""


def _on_sigterm(signum, frame):
    raise Terminated()


def os_error_line(exc: OSError) -> str:
    """`<path>: <strerror>: <fix>` for an OSError."""
    where = exc.filename if exc.filename is not None else "file system"
    what = exc.strerror or str(exc)
    if exc.filename2 is not None:
        where = f"{where} -> {exc.filename2}"
    return f"{where}: {what}: {_FIXES.get(exc.errno, 'check the path')}"


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run `main`; bad input prints `error: ...` on stderr and returns 2; Ctrl-C 130, SIGTERM 143."""
    from quantcore import io

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    io.begin_run()
    try:
        with quiet_unless_terminal():
            code = main(argv)
    except QuantDSEError as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        return 0
    except OSError as exc:
        return _fail(os_error_line(exc))
    except RecursionError:
        return _fail("input nested too deeply to process: simplify the file")
    except MemoryError:
        return _fail("input too large for this machine's memory: use a smaller model, sweep or file")
    except KeyboardInterrupt:
        return 130
    except Terminated:
        return 143
    finally:
        io.end_run()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return int(code or 0)


def quiet_unless_terminal():
    """Library warnings (numpy, torch, transformers, ...) off a captured stderr: there the one-line
    error or the result is all a reader parses; on a terminal they show as usual."""
    import contextlib
    import warnings

    if sys.stderr is not None and sys.stderr.isatty():
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    return stack


def _fail(line: str) -> int:
    print(f"error: {' '.join(line.split())}", file=sys.stderr)
    return 2


import argparse  # noqa: E402
class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one QuantDSEError line (exit 2), not usage text.

    A value that starts with "-" (`--budget -4bits`) is kept as the flag's value, so the
    user hears what is wrong with the value rather than "expected one argument". An empty
    value is an error: `--out ''` must not mean "no --out" (stdout) or "the current folder".
    """

    def error(self, message: str):  # type: ignore[override]
        raise QuantDSEError(f"{message}: see `python -m {self.prog} --help`")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        import sys

        argv = list(sys.argv[1:] if args is None else args)
        takes_value = {flag for action in self._actions if action.nargs is None and action.option_strings
                       and not isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                                                   argparse._HelpAction))
                       for flag in action.option_strings}
        merged, i = [], 0
        while i < len(argv):
            if argv[i] in takes_value and i + 1 < len(argv) and argv[i + 1].startswith("-") \
                    and argv[i + 1][1:2].isdigit():
                merged.append(f"{argv[i]}={argv[i + 1]}")
                i += 2
            else:
                merged.append(argv[i])
                i += 1
        parsed = super().parse_args(merged, namespace)
        self._refuse_empty(parsed)
        return parsed

    def _refuse_empty(self, parsed) -> None:
        """An empty value (`--out ''`, `--hw ' '`) is an error, never taken as "not given"."""
        for action in self._actions:
            value = getattr(parsed, action.dest, None)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, str) and not v.strip() for v in values) and value is not action.default:
                name = "/".join(action.option_strings) or action.metavar or action.dest
                raise QuantDSEError(f"{name} is empty: give a value, or leave the flag out for its default")
