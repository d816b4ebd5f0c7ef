"""The Fashion-MNIST loader: local files checked by MD5, keras's cache, keras's download, one clear error."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import DATA_DIR

from nbtune import datasets
from nbtune._errors import TuneUsageError

FILES = list(datasets.FASHION_MNIST_MD5)


@pytest.fixture(autouse=True)
def fresh_process_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: nothing loaded yet."""
    monkeypatch.setattr(datasets, "_cache", {})


@pytest.fixture
def no_configured_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No NBTUNE_DATA_DIR and an empty, writable keras home; returns keras's cache folder."""
    monkeypatch.delenv("NBTUNE_DATA_DIR", raising=False)
    home = tmp_path / "keras-home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home / "datasets" / "fashion-mnist"


def copy_data(to: Path, damage: str | None = None, leave_out: str | None = None) -> Path:
    to.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if name == leave_out:
            continue
        if name == damage:
            data = bytearray((DATA_DIR / name).read_bytes())
            data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the file
            (to / name).write_bytes(bytes(data))
        else:
            (to / name).symlink_to(DATA_DIR / name)
    return to


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def test_reads_the_original_files_from_nbtune_data_dir(monkeypatch):
    monkeypatch.setenv("NBTUNE_DATA_DIR", str(DATA_DIR))
    (x_train, y_train), (x_test, y_test) = datasets.fashion_mnist()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    assert list(y_train[:5]) == [9, 0, 0, 3, 0] and set(np.unique(y_test)) == set(range(10))
    assert x_train.max() == 255 and np.bincount(y_train).tolist() == [6000] * 10


def test_the_data_dir_argument_wins_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NBTUNE_DATA_DIR", str(tmp_path / "nowhere"))
    (x_train, _), _ = datasets.fashion_mnist(data_dir=DATA_DIR)
    assert len(x_train) == 60000


def test_a_second_call_in_the_process_reuses_the_loaded_arrays(monkeypatch):
    monkeypatch.setenv("NBTUNE_DATA_DIR", str(DATA_DIR))
    first = datasets.fashion_mnist()
    assert datasets.fashion_mnist() is first
    with pytest.raises(ValueError, match="read-only"):
        first[0][0][0, 0, 0] = 1  # shared arrays: a trial cannot spoil the next trial's data


def test_a_damaged_file_is_refused_naming_the_file_and_its_md5(tmp_path):
    folder = copy_data(tmp_path / "data", damage="t10k-images-idx3-ubyte.gz")
    with pytest.raises(TuneUsageError) as err:
        datasets.fashion_mnist(data_dir=folder)
    message = str(err.value)
    assert "t10k-images-idx3-ubyte.gz is damaged" in message
    assert "expected bef4ecab320f06d8554ea6380940ec79" in message
    assert "\n" not in message


def test_missing_files_are_named_with_how_to_get_them(tmp_path):
    folder = copy_data(tmp_path / "data", leave_out="train-labels-idx1-ubyte.gz")
    with pytest.raises(TuneUsageError) as err:
        datasets.fashion_mnist(data_dir=folder)
    message = str(err.value)
    assert "lacks train-labels-idx1-ubyte.gz" in message
    assert "zalandoresearch/fashion-mnist" in message and "NBTUNE_DATA_DIR" in message


def test_a_data_dir_that_does_not_exist_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("NBTUNE_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(TuneUsageError, match=r"NBTUNE_DATA_DIR folder .*nowhere does not exist"):
        datasets.fashion_mnist()


def test_without_a_data_dir_keras_cache_is_used(no_configured_data):
    copy_data(no_configured_data)
    (x_train, y_train), _ = datasets.fashion_mnist()
    assert len(x_train) == len(y_train) == 60000


@pytest.fixture
def keras_origin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A real HTTP server on 127.0.0.1 serving the original files, standing in for keras's download site."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(DATA_DIR))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(datasets, "KERAS_ORIGIN", f"http://127.0.0.1:{server.server_address[1]}/")
    yield
    server.shutdown()
    server.server_close()


@pytest.mark.slow  # imports keras
def test_without_local_files_keras_downloads_them_into_its_cache(no_configured_data, keras_origin):
    (_, _), (x_test, _) = datasets.fashion_mnist()
    assert len(x_test) == 10000
    assert sorted(p.name for p in no_configured_data.iterdir()) == sorted(FILES)


@pytest.mark.slow  # imports keras
def test_a_damaged_file_in_keras_cache_is_downloaded_again(no_configured_data, keras_origin):
    copy_data(no_configured_data, damage="train-labels-idx1-ubyte.gz")
    (_, y_train), _ = datasets.fashion_mnist()
    assert list(y_train[:5]) == [9, 0, 0, 3, 0]
    assert datasets.md5(no_configured_data / "train-labels-idx1-ubyte.gz") == "25c81989df183df01b3e8a0aad5dffbe"


@pytest.mark.slow  # imports keras
def test_with_no_files_and_no_download_one_error_says_how_to_get_them(no_configured_data, monkeypatch):
    monkeypatch.setattr(datasets, "KERAS_ORIGIN", f"http://127.0.0.1:{closed_port()}/")
    with pytest.raises(TuneUsageError) as err:
        datasets.fashion_mnist()
    message = str(err.value)
    assert message.startswith("Fashion-MNIST: no local files and keras could not download")
    assert "set NBTUNE_DATA_DIR" in message and "\n" not in message
