"""Errors a user can fix from the command line.

Entry points print a :class:`ConvnetlabError` as one ``error: ...`` line and exit non-zero, instead of
a traceback: the message itself must say what was wrong and what to do.
"""


class ConvnetlabError(Exception):
    """Bad input or a stopped run, explained in one line that says what to do."""
