"""The one exception type for bad input.

Every message is one line that names the problem and the fix. The CLI boundary
(`dse.cli.run_cli`) prints it and exits with code 2; any other exception is a bug
and keeps its traceback.
"""


class QuantDSEError(ValueError):
    """Bad input: unknown name, malformed file, impossible constraint."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
