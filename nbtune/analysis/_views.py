"""`_tune.plot`: a search's figures, the same functions the dashboard and the MLflow artifacts use."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbtune.analysis._importance import importance
from nbtune.ui import _analysis_plots, _plots

if TYPE_CHECKING:
    from nbtune._result import TuneResult


class ResultPlots:
    """matplotlib Figures of one search's trials, to show, restyle (`fig.axes[0]`) or save (`fig.savefig`)."""

    def __init__(self, result: TuneResult) -> None:
        self._result = result

    def parallel_coordinates(self, **kwargs: Any) -> Any:
        """One line per finished trial across the parameters to the metric; the best in red."""
        r = self._result
        return _analysis_plots.parallel_coordinates(r.records, r.param_names, r.metric, r.mode, **kwargs)

    def importance(self, **kwargs: Any) -> Any:
        """Bars of `_tune.importance()` (raises NotEnoughTrials, saying how many, before there are enough)."""
        r = self._result
        return _analysis_plots.importance(importance(r.records, r.param_names, r.metric), **kwargs)

    def history(self, **kwargs: Any) -> Any:
        """The metric over trials with the best so far."""
        r = self._result
        return _plots.history(r.records, r.metric, r.mode, **kwargs)

    def durations(self, **kwargs: Any) -> Any:
        """How long trials took, by status."""
        return _plots.durations(self._result.records, **kwargs)

    def __repr__(self) -> str:
        return "plots of this search: parallel_coordinates(), importance(), history(), durations()"
