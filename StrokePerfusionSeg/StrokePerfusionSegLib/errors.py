"""Exceptions that carry a message meant for the user."""


class InputError(ValueError):
    """A user mistake: bad file, bad value, missing input.

    The message names the problem and the fix in one line. Command lines print it without a
    traceback and exit with :data:`EXIT_USER_ERROR`; the Slicer panel shows it in a dialog.
    """


class CancelledError(RuntimeError):
    """The user pressed Cancel; work stopped cleanly and what was in progress was not written."""


#: Exit status of the command line for a user mistake (bad input, bad option).
EXIT_USER_ERROR = 2
#: Exit status of the command line for a failure that is not the user's (a bug, a crash).
EXIT_FAILURE = 1


def run_command(action, *, name: str) -> int:
    """Run a command-line ``action()`` and turn its outcome into an exit status.

    ``action`` returns an exit status (or None for 0). A user mistake prints its one-line
    message and gives :data:`EXIT_USER_ERROR`; Cancel or Ctrl-C gives 130; anything else is a
    failure that is not the user's: it is logged with its traceback, for the bug report, and
    gives :data:`EXIT_FAILURE`.
    """
    import logging
    import sys

    try:
        return int(action() or 0)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (CancelledError, KeyboardInterrupt):
        # Outputs are atomic: the study in progress is not written; finished ones (a batch) stay.
        print("cancelled: the output in progress was not written; outputs finished before it are kept",
              file=sys.stderr)
        return 130
    except Exception:
        logging.getLogger(name).exception("%s failed", name)
        return EXIT_FAILURE
