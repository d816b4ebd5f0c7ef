"""The resident partition as Keras input pipelines built once per worker, not once per hop.

`model.fit(x, y)` on numpy arrays copies them into a tensor and builds a tf.data pipeline on every
call: 50-60 ms for a 30,000-row partition, which the pool pays once per fit and a model that
hops pays on every hop and every validation. Here each array becomes a tensor once and each
(x, y, batch size, shuffle) one dataset, reshuffled on every pass as Keras' own does. The
tensor is the copy Keras would make during each hop anyway, so the worker's peak memory is the
same. Only on Keras' TensorFlow backend; elsewhere (JAX, torch) `batches` is None and the hop
gives fit the arrays.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

Key = tuple[int, int, int, bool]  # (id(x), id(y) or 0, batch size, shuffle)


class Feeds:
    """The datasets a worker's hops train and validate on, for arrays that live as long as the search here.

    Those are the resident partition, the validation rows sent with it and the notebook's variables
    the cell captured; an array the cell makes anew for each model goes to fit as it is, so a
    search of many models does not pile up its tensors.
    """

    def __init__(self, arrays: Iterable[Any] = ()) -> None:
        self._arrays = {id(a): a for a in arrays if _plain(a)}  # holding them keeps their id()s theirs
        self._tensors: dict[int, Any] = {}
        self._datasets: dict[Key, Any] = {}

    def batches(self, x: Any, y: Any, batch_size: int, shuffle: bool) -> Any:
        """One pass over (x, y) in batches, shuffled each pass if asked; None where fit must take the arrays."""
        arrays = (x,) if y is None else (x, y)
        if not _on_tensorflow() or any(id(a) not in self._arrays for a in arrays):
            return None
        key = (id(x), id(y) if y is not None else 0, batch_size, shuffle)
        dataset = self._datasets.get(key)
        if dataset is None:
            dataset = self._datasets[key] = self._build(x, y, batch_size, shuffle)
        return dataset

    def _build(self, x: Any, y: Any, batch_size: int, shuffle: bool) -> Any:
        import tensorflow as tf

        arrays = tuple(self._tensor(a) for a in (x, y) if a is not None)
        rows = int(arrays[0].shape[0])
        indices = tf.data.Dataset.range(rows)
        if shuffle:
            indices = indices.shuffle(rows, reshuffle_each_iteration=True)  # a new permutation each pass
        gathered = indices.batch(batch_size).map(
            lambda i: tuple(tf.gather(a, i) for a in arrays), num_parallel_calls=tf.data.AUTOTUNE
        )
        # As Keras does: tf.data's default graph rewrites serialize the pipeline, copying the tensors it holds.
        options = tf.data.Options()
        options.experimental_optimization.apply_default_optimizations = False
        return gathered.prefetch(tf.data.AUTOTUNE).with_options(options)

    def _tensor(self, array: Any) -> Any:
        tensor = self._tensors.get(id(array))
        if tensor is None:
            import keras
            import tensorflow as tf

            # As Keras does with arrays: floats other than floatx (float64 from pandas, say) become floatx.
            floating = array.dtype.kind == "f" and array.dtype != keras.config.floatx()
            tensor = tf.convert_to_tensor(array, dtype=keras.config.floatx() if floating else None)
            self._tensors[id(array)] = tensor
        return tensor


def _on_tensorflow() -> bool:
    keras = sys.modules.get("keras")  # the cell imported it before its fit call
    return keras is not None and keras.config.backend() == "tensorflow"


def _plain(array: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(array, numpy.ndarray) and array.ndim >= 1 and len(array) > 0
