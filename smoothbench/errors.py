"""The one exception type for bad user input.

Low layers raise :class:`UserError` with a message that says what is wrong and what to do; the CLI
prints that single line and exits with status 2. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user (missing file, wrong flag, foreign checkpoint...)."""
