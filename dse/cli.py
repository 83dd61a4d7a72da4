"""The CLI boundary: bad input becomes one line on stderr and exit code 2."""
from __future__ import annotations

import sys
from typing import Callable

from dse.errors import QuantDSEError


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run `main`; a QuantDSEError prints `error: ...` on stderr and returns 2."""
    try:
        code = main(argv)
    except QuantDSEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return int(code or 0)


import argparse  # noqa: E402


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one QuantDSEError line (exit 2), not usage text."""

    def error(self, message: str):  # type: ignore[override]
        raise QuantDSEError(f"{message}: see `python -m {self.prog} --help`")
