"""Run a callback right after a module's first import (how Keras' fit and a trial's MLflow get hooked)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType


class AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: lets the real finder load `name`, then calls `callback(module)` once it has run.

    Put it first on `sys.meta_path`; it removes itself at the first import of `name` (one try only).
    """

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name, self._callback = name, callback

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, exec_module, callback = spec.loader, spec.loader.exec_module, self._callback

        def exec_and_call(module: ModuleType) -> None:
            exec_module(module)
            callback(module)

        loader.exec_module = exec_and_call  # type: ignore[method-assign]
        return spec


class PatchOnce:
    """A change to a module made once per process: now if the module is loaded, else right after its import."""

    def __init__(self, name: str, apply: Callable[[ModuleType], None], ready: str | None = None) -> None:
        self.name, self.ready, self._apply = name, ready, apply
        self.done = False
        self._lock = threading.RLock()  # re-entered when the module is loaded already

    def watch(self) -> None:
        """Apply the change now if `name` is loaded (with attribute `ready`), else when it is imported."""
        if not self.done:
            with self._lock:
                when_imported(self.name, self._once, self.ready)

    def _once(self, module: ModuleType) -> None:
        with self._lock:
            if not self.done:
                self._apply(module)
                self.done = True


def when_imported(name: str, callback: Callable[[ModuleType], None], ready: str | None = None) -> None:
    """Call `callback(module)` now if `name` is loaded (with attribute `ready`, if named), else right after its import.

    The caller makes `callback` idempotent: a module being imported on another thread may call it twice.
    """
    module = sys.modules.get(name)
    if module is not None and (ready is None or hasattr(module, ready)):
        callback(module)
    elif not any(isinstance(f, AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, AfterImport(name, callback))
