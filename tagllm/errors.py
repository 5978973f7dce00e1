"""Errors caused by the user's input (a file, a row, a flag, a folder), as opposed to bugs.

The CLI prints a `UserError` as one line naming what was wrong and exits 2; anything else keeps
its traceback. This module imports nothing, so every other one can raise it.
"""


class UserError(ValueError):
    """Bad input (a file, a flag, a folder): the CLI prints the message as one line and exits 2."""
