"""The `%%tune` cell magic and `%tune_template`; wiring only, each step lives in its own module."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from nbtune import templates
from nbtune._errors import SearchFailed, TuneUsageError, one_line_errors
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune._run import run_search
from nbtune._traits import option_traits
from nbtune.cell._flags import parse_flags
from nbtune.cell._parse import CellSpec, parse_cell
from nbtune.cell._space import search_space
from nbtune.lab._comm import register as register_lab_comm
from nbtune.tracking._ui_server import mlflow_ui_magic

if TYPE_CHECKING:
    from nbtune.ui._form import TuneForm


@magics_class
class TuneMagic(Magics, option_traits()):  # type: ignore[misc]  # traits derived from TuneOptions
    """Turn an annotated training cell into a hyperopt search. Defaults: `%config TuneMagic.<name> = ...`."""

    def defaults(self) -> TuneOptions:
        """TuneOptions from the traits, i.e. `%config` settings."""
        names = set(TuneOptions.names()) & set(self.trait_names())
        return TuneOptions().replace(**{n: getattr(self, n) for n in names})

    @cell_magic
    @one_line_errors
    def tune(self, line: str, cell: str) -> TuneResult | TuneForm:
        """%%tune [--max-evals N] [--metric NAME] ...: search over the cell's `# tune:` values."""
        shell = self._shell()
        options = parse_flags(line, self.defaults())
        source: str = shell.transform_cell(cell)  # type: ignore[no-untyped-call]  # `!pip` ... to Python
        spec = parse_cell(source, line_offset=1)  # line 1 is the %%tune header
        if options.ui:  # the form's Start runs `_search` with the values the user picked
            from nbtune.ui._form import TuneForm

            search_space(spec.params, options.space, shell.user_ns)  # nothing to tune: say so now
            return TuneForm(spec, options, self._search)
        return self._search(spec, options)

    def _search(self, spec: CellSpec, options: TuneOptions, show: Callable[[Any], Any] | None = None) -> TuneResult:
        """Search over a parsed cell and bind the result; `show` places the dashboard (the `--ui` form)."""
        try:
            result = run_search(spec, options, self._shell().user_ns, show=show)
        except SearchFailed as failed:
            self._publish(failed.result, options)
            _show_first_traceback(failed.result)
            raise
        self._publish(result, options)
        return result

    @line_magic
    @one_line_errors
    def tune_template(self, line: str) -> None:
        """%tune_template NAME puts a ready `%%tune` cell below; `--list` shows the names."""
        name = line.strip()
        if not name or name in ("--list", "-l"):
            for known in templates.names():
                print(f"{known:20s} {templates.describe(known)}")
            return
        self._shell().set_next_input(templates.get(name), replace=False)

    @line_magic
    @one_line_errors
    def tune_mlflow_ui(self, line: str) -> None:
        """%tune_mlflow_ui [--port N] [--stop]: start `mlflow ui` on 127.0.0.1 for the local store, print its URL."""
        options = self.defaults()
        mlflow_ui_magic(line, options.tracking_uri, options.mlflow_ui_url)

    def _shell(self) -> InteractiveShell:
        if self.shell is None:  # only when the magics were built outside a shell
            raise TuneUsageError("%%tune needs an IPython shell")
        return self.shell

    def _publish(self, result: TuneResult, options: TuneOptions) -> None:
        """Bind the result (and with --apply-best the best values) into the notebook."""
        ns = self._shell().user_ns
        ns[options.out] = result
        if options.apply_best and result.best_trial is not None:
            ns.update(result.best_params)


def _show_first_traceback(result: TuneResult) -> None:
    failed = sorted((r for r in result.records if r.traceback), key=lambda r: r.number)
    if failed:
        print(f"Trial {failed[0].number} failed:\n{failed[0].traceback}", file=sys.stderr)


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (`%load_ext nbtune`)."""
    ipython.register_magics(TuneMagic)
    register_lab_comm(ipython)  # the JupyterLab extension's comm target; a no-op outside a kernel
