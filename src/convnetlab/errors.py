"""Errors a user can fix from the command line.

Entry points print a :class:`ConvnetlabError` as one ``error: ...`` line on stderr and exit with status 2,
instead of a traceback: the message itself must say what was wrong and what to do. The subclasses also
derive from the builtin a caller would expect (``ValueError``, ``FileNotFoundError``, ``RuntimeError``).
"""


class ConvnetlabError(Exception):
    """Bad input or a stopped run, explained in one line that says what to do."""


class InputError(ConvnetlabError, ValueError):
    """A config value, option or file content that cannot work."""


class MissingFileError(ConvnetlabError, FileNotFoundError):
    """A path the user gave (data root, checkpoint, weights) does not exist or holds nothing usable."""


class BadImageError(ConvnetlabError, RuntimeError):
    """An image file that does not decode."""


def one_line(error: BaseException) -> str:
    """The error's message on one line. An exception re-raised from a DataLoader worker carries the
    worker's traceback in its message; its last line is the original message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    last = lines[-1]
    for prefix in (f"{type(error).__module__}.{type(error).__qualname__}: ", f"{type(error).__qualname__}: "):
        if len(lines) > 1 and last.startswith(prefix):
            return last[len(prefix):]
    return " ".join(lines)
