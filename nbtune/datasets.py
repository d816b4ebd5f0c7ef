"""Datasets for templates and demos: Fashion-MNIST from local files, keras's cache or keras's download."""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from nbtune._errors import TuneUsageError

Arrays = tuple[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]], tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]

# The original files (Zalando Research, MIT licence); the same bytes keras downloads.
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# Where keras.datasets.fashion_mnist.load_data() downloads from (a module attribute so tests can point it elsewhere).
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_KERAS_SUBDIR = os.path.join("datasets", "fashion-mnist")
_IDX_MAGIC = {"images": 2051, "labels": 2049}
_HOW_TO_GET = (
    "download the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from "
    "https://github.com/zalandoresearch/fashion-mnist (data/fashion) into a folder "
    "and set NBTUNE_DATA_DIR to it (or pass data_dir=...)"
)

_cache: dict[Path, Arrays] = {}
_lock = threading.Lock()


def fashion_mnist(data_dir: str | os.PathLike[str] | None = None) -> Arrays:
    """Fashion-MNIST as `(x_train, y_train), (x_test, y_test)` uint8 arrays, loaded once per process.

    Reads the four original IDX gz files from `data_dir`, else `$NBTUNE_DATA_DIR`, else keras's
    cache (`~/.keras/datasets/fashion-mnist`), else downloads them with keras. The arrays are
    read-only because they are shared by every call in the process.
    """
    with _lock:  # parallel trials in one process (threads) should load once, not race
        folder = _find_folder(data_dir)
        if folder not in _cache:
            _cache[folder] = _load(folder)
        return _cache[folder]


def _find_folder(data_dir: str | os.PathLike[str] | None) -> Path:
    """The folder holding four verified files: the one asked for, keras's cache, or a fresh download."""
    asked = data_dir if data_dir is not None else os.environ.get("NBTUNE_DATA_DIR") or None
    if asked is not None:
        source = "data_dir" if data_dir is not None else "NBTUNE_DATA_DIR"
        folder = Path(asked).expanduser().resolve()
        if folder not in _cache:
            _check_folder(folder, source)
        return folder
    for folder in _keras_cache_folders():
        if folder in _cache or _is_complete(folder):
            return folder
    return _download()


def _keras_home() -> Path:
    """Keras's own choice: $KERAS_HOME, else ~/.keras, else /tmp/.keras when the home is not writable."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"]).expanduser()
    home = Path.home()
    return (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"


def _keras_cache_folders() -> list[Path]:
    # keras.utils.get_file falls back to /tmp/.keras when the keras home is not writable.
    home = _keras_home()
    bases = [home] if os.access(home, os.W_OK) else [home, Path("/tmp/.keras")]
    return [(base / _KERAS_SUBDIR).resolve() for base in bases]


def md5(path: Path) -> str:
    """The hex MD5 digest of a file."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_complete(folder: Path) -> bool:
    try:
        return all(md5(folder / name) == digest for name, digest in FASHION_MNIST_MD5.items())
    except OSError:
        return False


def _check_folder(folder: Path, source: str) -> None:
    """Raise one clear error if the folder the user named lacks a file or holds a damaged one."""
    if not folder.is_dir():
        raise TuneUsageError(f"Fashion-MNIST: {source} folder {folder} does not exist; {_HOW_TO_GET}")
    missing = [name for name in FASHION_MNIST_MD5 if not (folder / name).is_file()]
    if missing:
        raise TuneUsageError(f"Fashion-MNIST: {source} folder {folder} lacks {', '.join(missing)}; {_HOW_TO_GET}")
    for name, digest in FASHION_MNIST_MD5.items():
        actual = md5(folder / name)
        if actual != digest:
            raise TuneUsageError(
                f"Fashion-MNIST: {folder / name} is damaged or not the original file "
                f"(md5 {actual}, expected {digest}); download it again: {_HOW_TO_GET}"
            )


def _download() -> Path:
    """Fetch the files into keras's cache with keras's own downloader (what users with internet get)."""
    try:
        from keras.utils import get_file
    except ImportError as exc:
        reason = f"no local files and keras is not installed ({exc})"
        raise TuneUsageError(f"Fashion-MNIST: {reason}; {_HOW_TO_GET}") from None
    paths = []
    for name, digest in FASHION_MNIST_MD5.items():
        try:
            paths.append(
                Path(
                    get_file(
                        name,
                        origin=KERAS_ORIGIN + name,
                        cache_dir=str(_keras_home()),
                        cache_subdir=_KERAS_SUBDIR,
                        file_hash=digest,
                    )
                )
            )
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TuneUsageError(
                f"Fashion-MNIST: no local files and keras could not download {name} ({reason}); {_HOW_TO_GET}"
            ) from None
    return paths[0].parent.resolve()


def _load(folder: Path) -> Arrays:
    x_train = _read_idx(folder / "train-images-idx3-ubyte.gz", "images")
    y_train = _read_idx(folder / "train-labels-idx1-ubyte.gz", "labels")
    x_test = _read_idx(folder / "t10k-images-idx3-ubyte.gz", "images")
    y_test = _read_idx(folder / "t10k-labels-idx1-ubyte.gz", "labels")
    return (x_train, y_train), (x_test, y_test)


def _read_idx(path: Path, kind: str) -> npt.NDArray[np.uint8]:
    """Parse an IDX file: big-endian magic, one 32-bit size per dimension, then uint8 data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    if magic != _IDX_MAGIC[kind]:
        raise TuneUsageError(f"Fashion-MNIST: {path} is not an IDX {kind} file (magic {magic}); {_HOW_TO_GET}")
    ndim = data[3]
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=ndim, offset=4))
    array = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)
    array.setflags(write=False)  # shared by every caller in the process; np.frombuffer is read-only anyway
    return array
