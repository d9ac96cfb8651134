"""The one exception type for bad user input, and how its messages name parameters.

Low layers raise :class:`UserError` with a message that says what is wrong and what to do; the CLI
prints that single line and exits with status 2. Anything else is a bug and keeps its traceback.

A message names a setting through :func:`param`: the Python API shows the parameter as it is spelled
there (``batch_size must be at least 1``), the command line as its flag (``--batch-size must be at
least 1``). So a notebook user never reads a flag, nor a CLI user a keyword.
"""

from __future__ import annotations

import re

# A parameter reference is "<MARK>api<SEP>cli<MARK>": control characters that never occur in paths or text.
_MARK, _SEP = "\x1f", "\x1e"
_REFERENCE = re.compile(f"{_MARK}([^{_MARK}{_SEP}]*){_SEP}([^{_MARK}{_SEP}]*){_MARK}")


def flag_of(name: str) -> str:
    """The command-line flag of parameter ``name`` (``batch_size`` → ``--batch-size``)."""
    return "--" + name.replace("_", "-")


def param(name: str, *, api: str | None = None, cli: str | None = None) -> str:
    """A reference to parameter ``name`` inside a :class:`UserError` message, shown as ``api`` (default: the
    name) by the Python API and as ``cli`` (default: its flag) on the command line."""
    return f"{_MARK}{api or name}{_SEP}{cli or flag_of(name)}{_MARK}"


class UserError(Exception):
    """Bad input from the user (missing file, wrong setting, foreign checkpoint...)."""

    def __init__(self, message: str) -> None:
        self.template = message
        super().__init__(_REFERENCE.sub(r"\1", message))

    def for_cli(self) -> str:
        """The message with every parameter shown as its command-line flag."""
        return _REFERENCE.sub(r"\2", self.template)
