"""The one exception type that means "the user gave bad input".

The CLI turns it into a single line on stderr and exit code 2; everything else
is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input that the user can fix: the message names the key, file or value."""
