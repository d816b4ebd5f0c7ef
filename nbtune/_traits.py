"""`%config TuneMagic.<name>` traits, derived from TuneOptions so defaults and help live in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, get_args, get_type_hints

from traitlets import Bool, Enum, Float, Int, TraitType, Unicode
from traitlets.config import Configurable

from nbtune._options import TuneOptions

_TRAITS: dict[type, type[TraitType[Any, Any]]] = {int: Int, float: Float, str: Unicode, bool: Bool}


def _trait(kind: Any, default: Any, help: str) -> TraitType[Any, Any]:
    choices = get_args(kind)
    optional = type(None) in choices
    if all(isinstance(c, str) for c in choices) and choices:  # a Literal: the flag's allowed words
        return Enum(choices, default, help=help).tag(config=True)
    base = next((c for c in choices if c is not type(None)), kind) if optional else kind
    return _TRAITS[base](default, allow_none=optional, help=help).tag(config=True)


def _flag(name: str, default: Any, metadata: Mapping[str, Any]) -> str:
    if not metadata["flag"]:
        return ""
    return f" (--{'no-' if default is True else ''}{name.replace('_', '-')})"


def option_traits() -> type[Configurable]:
    """A base class holding one configurable trait per TuneOptions field that `%config` may set."""
    hints = get_type_hints(TuneOptions)
    traits = {
        f.name: _trait(hints[f.name], f.default, f"{f.metadata['help']}{_flag(f.name, f.default, f.metadata)}.")
        for f in fields(TuneOptions)
        if f.metadata["config"]
    }
    return type("OptionTraits", (Configurable,), traits)
