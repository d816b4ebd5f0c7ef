"""Parse the `%%tune` line (`--max-evals 32 --metric val_loss ...`) into TuneOptions."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import fields
from typing import Any, NoReturn, get_args, get_type_hints

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


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _build() -> _Parser:
    """One flag per TuneOptions field (`max_evals` -> `--max-evals`), typed from the field."""
    p = _Parser(prog="%%tune", add_help=False, allow_abbrev=False)
    hints = get_type_hints(TuneOptions)
    for f in fields(TuneOptions):
        if not f.metadata["flag"]:
            continue
        flag, kind = "--" + f.name.replace("_", "-"), hints[f.name]
        if kind is bool:  # a switch: --quiet turns on, --no-mlflow turns off what is on by default
            off = f.default is True
            p.add_argument(
                f"--no-{flag[2:]}" if off else flag,
                dest=f.name,
                action="store_false" if off else "store_true",
                default=None,
            )
        elif f.name == "resume":  # --resume alone: this cell's last search; --resume RUN_ID: that one
            p.add_argument(flag, nargs="?", const="")
        elif f.name == "log_model":  # --log-model alone: every trial's model, as before `best` existed
            p.add_argument(flag, nargs="?", const="all")
        else:
            number = {int: _int, float: _number}.get(next((t for t in get_args(kind) if t is not type(None)), kind))
            p.add_argument(flag, type=number or str)
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
