"""Keras' EarlyStopping at the hopper's epoch boundaries, decided on the driver from the epoch logs."""

from __future__ import annotations

import math
from typing import Any

from nbtune.hopper._fit import StopRule


class EarlyStop:
    """When to stop a model, as the EarlyStopping callback of its fit call would have."""

    def __init__(self, rule: StopRule) -> None:
        self.rule = rule
        self.best = math.inf if rule.mode == "min" else -math.inf
        self.best_state: Any = None  # the state at the best epoch (restore_best_weights)
        self._wait = 0

    def _better(self, value: float, reference: float) -> bool:
        delta = self.rule.min_delta
        return value < reference - delta if self.rule.mode == "min" else value > reference + delta

    def stop(self, epoch: int, logs: dict[str, float], state: Any) -> bool:
        """After epoch `epoch` (0-based): True when the model should train no further."""
        value = logs.get(self.rule.monitor)
        if value is None:
            return False
        if self.best_state is None:
            self.best_state = state
        self._wait += 1
        if self._better(value, self.best):
            self.best, self.best_state = value, state
            if self.rule.baseline is None or self._better(value, self.rule.baseline):
                self._wait = 0
            return False
        return self._wait >= self.rule.patience and epoch > 0
