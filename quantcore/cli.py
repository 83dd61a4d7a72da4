"""The CLI boundary: bad input becomes one line on stderr and exit code 2."""
from __future__ import annotations

import sys
from typing import Callable

from quantcore.errors import QuantDSEError


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
    """argparse that reports a bad flag as one QuantDSEError line (exit 2), not usage text.

    A value that starts with "-" (`--budget -4bits`) is kept as the flag's value, so the
    user hears what is wrong with the value rather than "expected one argument".
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
        return super().parse_args(merged, namespace)
