"""Exceptions that carry a message meant for the user."""


class InputError(ValueError):
    """A user mistake: bad file, bad value, missing input.

    The message names the problem and the fix in one line. Command lines print it without a
    traceback and exit with :data:`EXIT_USER_ERROR`; the Slicer panel shows it in a dialog.
    """


class CancelledError(RuntimeError):
    """The user pressed Cancel; work stopped cleanly and nothing was written."""


#: Exit status of the command line for a user mistake (bad input, bad option).
EXIT_USER_ERROR = 2
#: Exit status of the command line for a failure that is not the user's (a bug, a crash).
EXIT_FAILURE = 1
