"""The one exception type for bad user input, and how its messages name parameters.

Low layers raise :class:`UserError` with a message that says what is wrong and what to do; the CLI
prints that single line and exits with status 2. Anything else is a bug and keeps its traceback.

A message names a setting through :func:`param`: the Python API shows the parameter as it is spelled
there (``batch_size must be at least 1``), the command line as its flag (``--batch-size must be at
least 1``). So a notebook user never reads a flag, nor a CLI user a keyword.
"""

from __future__ import annotations

import errno
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


class _NamesParameters:
    """A message (of an exception or a warning) that may name parameters through :func:`param`: ``str()``
    shows them as the Python API spells them, :meth:`for_cli` as command-line flags."""

    def __init__(self, message: str) -> None:
        self.template = message
        super().__init__(_REFERENCE.sub(r"\1", message))

    def for_cli(self) -> str:
        """The message with every parameter shown as its command-line flag."""
        return _REFERENCE.sub(r"\2", self.template)


class UserError(_NamesParameters, Exception):
    """Bad input from the user (missing file, wrong setting, foreign checkpoint...)."""


class SettingsWarning(_NamesParameters, UserWarning):
    """A warning whose message may name parameters (shown as flags by the CLI)."""


#: errno → what it means, for failures of the environment that a user can fix.
_ENVIRONMENT = {
    errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "permission denied", errno.EPERM: "operation not permitted", errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long", errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file", errno.ENOENT: "no such file or folder",
    errno.EMFILE: "too many open files", errno.EIO: "input/output error (a failing disk or network file system?)",
}


def expected_failure(exc: BaseException) -> UserError | None:
    """The one place that turns an expected failure into one clear line: a :class:`UserError` as it is,
    file-system errors a user can fix (a full disk, no permission, a read-only place...) and names or paths
    that cannot be encoded. ``None`` for anything else: that is a bug."""
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT:
        where = f": {exc.filename}" if exc.filename else ""
        return UserError(f"{_ENVIRONMENT[exc.errno]}{where}; fix that (or choose another path) and run again")
    if isinstance(exc, UnicodeError):
        return UserError(f"a name or path cannot be encoded or decoded as UTF-8 ({exc.reason}); rename it with "
                         "plain characters and run again")
    return None
