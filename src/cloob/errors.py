"""The errors cloob reports to a user as one line, and the one place that formats them.

Every module raises its own subclass of :class:`CloobError` (``DataError``, ``CheckpointError``,
``ConfigError``, ...); ``cloob.cli.main`` catches them once, prints ``error: <first line>`` and returns the
error's ``exit_code`` (2 = bad input; ``TrainingDiverged`` is 3). Plain ``ValueError``/``OSError``/``KeyError``
raised while reading a user's input are reported the same way. ``CLOOB_TRACEBACK=1`` re-raises instead, for
debugging.
"""
from __future__ import annotations


class CloobError(Exception):
    """Base of cloob's reportable errors. ``exit_code``: what ``cloob`` returns when one ends a command."""

    exit_code = 2


# What cli.main reports as one line instead of a traceback: cloob's own errors, and the built-in errors that
# reading a user's files and arguments raises (a missing path, a malformed value, an absent key).
REPORTED = (CloobError, ValueError, OSError, KeyError)


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first non-empty line of ``str(e)`` (at most ``limit`` characters), or the type's name."""
    text = str(e).strip()
    return text.splitlines()[0][:limit] if text else type(e).__name__
