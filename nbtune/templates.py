"""Ready-made `%%tune` cells, kept as files in the top-level `templates/` folder."""

from __future__ import annotations

from pathlib import Path

from nbtune._errors import TuneUsageError

_SUFFIX = ".ipy"


def _folder() -> Path:
    here = Path(__file__).parent
    packaged = here / "_templates"  # where the wheel puts them
    return packaged if packaged.is_dir() else here.parent / "templates"  # a source checkout


def names() -> list[str]:
    """Names of the available templates."""
    return sorted(p.stem for p in _folder().glob(f"*{_SUFFIX}"))


def get(name: str) -> str:
    """The text of template `name`, ready to paste into a cell."""
    path = _folder() / f"{name}{_SUFFIX}"
    if name not in names():
        raise TuneUsageError(f"unknown template '{name}' (available: {', '.join(names())})")
    return path.read_text(encoding="utf-8")


def describe(name: str) -> str:
    """The template's one-line description: its first comment line."""
    for line in get(name).splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""
