"""Helpers the test modules import (conftest holds fixtures only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from IPython.core.interactiveshell import InteractiveShell

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("NBTUNE_DATA_DIR", ROOT.parent / "shared" / "data" / "fashion-mnist"))


def run_tune(ip: InteractiveShell, line: str, cell: str) -> Any:
    """Run a %%tune cell the way the kernel does (run_cell_magic raises what the cell raises)."""
    return ip.run_cell_magic("tune", line, cell)
