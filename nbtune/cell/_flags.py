"""Parse the `%%tune` line (`--max-evals 32 --metric val_loss ...`) into TuneOptions."""

from __future__ import annotations

import argparse
import shlex
from typing import Any, NoReturn

from nbtune._errors import TuneUsageError
from nbtune._options import TuneOptions


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise TuneUsageError(f"%%tune: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise TuneUsageError(f"%%tune: {message or 'bad arguments'}".strip())


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None


def _build() -> _Parser:
    p = _Parser(prog="%%tune", add_help=False, allow_abbrev=False)
    p.add_argument("--max-evals", type=_int)
    p.add_argument("--parallelism", type=_int)
    p.add_argument("--backend")
    p.add_argument("--algo")
    p.add_argument("--metric")
    p.add_argument("--mode")
    p.add_argument("--seed", type=_int)
    p.add_argument("--timeout", type=_seconds)
    p.add_argument("--trial-timeout", type=_seconds)
    p.add_argument("--max-failures", type=_int)
    p.add_argument("--early-stop", type=_int)
    p.add_argument("--space")
    p.add_argument("--log-metrics")
    p.add_argument("--experiment")
    p.add_argument("--run-name")
    p.add_argument("--tracking-uri")
    p.add_argument("--no-mlflow", dest="mlflow", action="store_false", default=None)
    p.add_argument("--resume", nargs="?", const="")
    p.add_argument("--out")
    p.add_argument("--apply-best", action="store_true", default=None)
    p.add_argument("--log-model", action="store_true", default=None)
    p.add_argument("--quiet", action="store_true", default=None)
    p.add_argument("--ui", action="store_true", default=None)
    return p


_PARSER = _build()


def parse_flags(line: str, defaults: TuneOptions | None = None) -> TuneOptions:
    """Options from the magic line, on top of `defaults` (from `%config`)."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise TuneUsageError(f"%%tune: cannot split the flags: {exc}") from None
    given: dict[str, Any] = {k: v for k, v in vars(_PARSER.parse_args(words)).items() if v is not None}
    return (defaults or TuneOptions()).replace(**given)
