"""The one exception type for bad input.

Every message is one line that names the problem and the fix. The CLI boundary
(`dse.cli.run_cli`) prints it and exits with code 2; any other exception is a bug
and keeps its traceback.
"""


class QuantDSEError(ValueError):
    """Bad input: unknown name, malformed file, impossible constraint.

    :param param: the library parameter at fault (``"budget"``, ``"overrides"``), where one is; the
        message is "<param> <message>", and a CLI names its own flag instead (`quantcore.cli.flag_names`);
        so `message` starts with a predicate: "must be an integer", "is out of range".
    :param key: the entry of that parameter at fault (an override's name), if any.
    """

    def __init__(self, message: str, param: str | None = None, key: str | None = None):
        self.detail = " ".join(str(message).split())
        self.param, self.key = param, key
        where = f"{param}[{key!r}]" if key is not None else param
        super().__init__(f"{where} {self.detail}" if param else self.detail)

    def for_flag(self, flag: str) -> "QuantDSEError":
        """The same error naming a command-line flag instead of the parameter (`--set rows must be ...`)."""
        return QuantDSEError(f"{flag} {self.key} {self.detail}" if self.key is not None else f"{flag} {self.detail}")
