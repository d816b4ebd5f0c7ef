"""Small text helpers shared by the trial, the tables and MLflow (standard library only: workers import it)."""

from __future__ import annotations

import math
from typing import Any


def first_line(exc: BaseException) -> str:
    """'TypeError: first line of the message' (the type alone when there is no message)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def shorten(value: Any, limit: int = 60) -> str:
    """The value as text (repr unless a string), cut to `limit` characters with '...'."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_number(value: Any) -> float | None:
    """The value as a float if it is a number (numpy and tensor scalars too), else None."""
    if isinstance(value, (str, bytes, bool)) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is neither nan nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: Any) -> str:
    """A short text for a value in a table or summary: 4 significant digits for floats."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def clock(seconds: float) -> str:
    """12:34 or 1:02:03."""
    s = max(0, int(seconds))
    h, m, s = s // 3600, s % 3600 // 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
