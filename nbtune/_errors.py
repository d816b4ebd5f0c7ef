"""The user-facing error types."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from IPython.core.error import UsageError

if TYPE_CHECKING:
    from nbtune._result import TuneResult

P = ParamSpec("P")
R = TypeVar("R")


class TuneUsageError(UsageError):
    """A user error in a `%%tune` cell or a `tune()` call: shown as one line, no traceback."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        self.reason = message
        text = f"line {line}: {message}" if line is not None else message
        super().__init__(text)


class SearchFailed(TuneUsageError):
    """No trial succeeded (or the cell itself is wrong); `.result` still holds every trial."""

    def __init__(self, message: str, result: TuneResult, line: int | None = None) -> None:
        super().__init__(message, line)
        self.result = result


def one_line_errors(magic: Callable[P, R]) -> Callable[P, R]:
    """Re-raise nbtune's errors as IPython's own UsageError, which IPython shows as one line.

    IPython prints the short form only for exactly `UsageError`, not for subclasses.
    """

    @functools.wraps(magic)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return magic(*args, **kwargs)
        except TuneUsageError as exc:
            raise UsageError(str(exc)) from None

    return wrapper
