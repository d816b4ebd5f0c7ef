"""Interrupt in-process code after a time limit (used by the local backend and the workers)."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class TrialTimeout(Exception):
    """Raised inside a trial that ran past its --trial-timeout."""


class TrialCancelled(BaseException):
    """Raised inside a running trial when the search is cancelled (a BaseException: the cell cannot catch it)."""


def raise_in_thread(ident: int, exc_type: type[BaseException]) -> None:
    """Raise `exc_type` in another thread at its next Python instruction (a blocking C call finishes first)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise TrialTimeout in the current thread once `seconds` have passed.

    On the main thread a timer signal interrupts even sleeps and blocking calls;
    elsewhere an asynchronous exception stops Python code at its next bytecode.
    """
    if not seconds:
        yield
        return
    if threading.current_thread() is threading.main_thread():
        with _alarm(seconds):
            yield
    else:
        with _async_raise_after(seconds):
            yield


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise TrialTimeout(f"trial ran past --trial-timeout ({seconds:g} s)")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _async_raise_after(seconds: float) -> Iterator[None]:
    target = threading.get_ident()
    done = threading.Event()

    def _fire() -> None:
        if not done.wait(seconds):
            raise_in_thread(target, TrialTimeout)

    watcher = threading.Thread(target=_fire, daemon=True, name="nbtune-trial-timeout")
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
