"""The bundled Fashion-MNIST template: its shape, its search space, and a short real run."""

from __future__ import annotations

import re

import pytest
from helpers import DATA_DIR, run_tune

import nbtune
from nbtune._options import TuneOptions
from nbtune.cell._flags import parse_flags
from nbtune.cell._parse import parse_cell

TEXT = nbtune.templates.get("fashion_mnist")
HEADER, BODY = TEXT.split("\n", 1)


def shrink(body: str, n_train: int, epochs: int) -> str:
    """Edit the two plain parameter lines, as a workshop would."""
    body, found = re.subn(r"^n_train = 60000\b", f"n_train = {n_train}", body, flags=re.M)
    body, found_epochs = re.subn(r"^epochs = \d+\b", f"epochs = {epochs}", body, flags=re.M)
    assert found == found_epochs == 1
    return body


def test_the_header_searches_val_loss_and_logs_the_accuracies():
    assert HEADER.startswith("%%tune ")
    options = parse_flags(HEADER.removeprefix("%%tune"), TuneOptions())
    assert (options.metric, options.mode, options.max_evals) == ("val_loss", "min", 32)
    assert options.log_metrics == ("val_accuracy", "test_accuracy")
    assert options.prune == "asha"  # Keras reports each epoch; hopeless trials stop early


def test_tunes_a_convolutional_networks_width_dropout_and_learning_rate():
    params = {p.name: p for p in parse_cell(BODY).params}
    assert list(params) == ["learning_rate", "filters", "dropout"]
    assert params["learning_rate"].dist == "loguniform"
    assert params["filters"].dist == "choice" and params["filters"].args == (16, 32)
    assert params["dropout"].dist == "uniform"
    assert "layers.Conv2D(filters, 3" in BODY and "layers.Dropout(dropout)" in BODY


def test_data_size_and_epochs_are_plain_lines_a_workshop_can_edit():
    assert re.search(r"^n_train = 60000 ", BODY, flags=re.M)
    assert re.search(r"^epochs = \d+ ", BODY, flags=re.M)
    assert "restore_best_weights=True" in BODY and 'monitor="val_loss"' in BODY
    assert "CosineDecay(learning_rate, steps)" in BODY  # over `epochs`: the last epochs take small steps


def test_tune_template_puts_it_below_and_lists_it(ip, capsys):
    ip.run_line_magic("tune_template", "fashion_mnist")
    assert ip.rl_next_input == TEXT
    ip.run_line_magic("tune_template", "--list")
    assert "Fashion-MNIST" in capsys.readouterr().out


@pytest.mark.slow
def test_three_trials_on_4000_images_reach_70_percent_test_accuracy(ip, monkeypatch):
    monkeypatch.setenv("NBTUNE_DATA_DIR", str(DATA_DIR))
    flags = HEADER.removeprefix("%%tune") + " --max-evals 3 --seed 1 --backend local --quiet"
    result = run_tune(ip, flags, shrink(BODY, n_train=4000, epochs=2))
    table = result.to_pandas()
    # --prune asha may stop a trial after its first epoch; the others run to the end.
    assert set(table.status) <= {"ok", "pruned"} and "ok" in set(table.status), table.error.tolist()
    assert set(table.filters) <= {16, 32}
    assert table.test_accuracy.max() >= 0.70
    assert (table.val_accuracy > 0.1).all() and (table.val_loss > 0).all()
    assert result.best_value == table[table.status == "ok"].val_loss.min()
