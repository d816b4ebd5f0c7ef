"""The hopper's per-worker datasets (nbtune.hopper._feed) on real TensorFlow and Keras."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nbtune.hopper._feed import Feeds

keras = pytest.importorskip("keras")


def passes(dataset, n):
    return [[tuple(np.asarray(t) for t in batch) for batch in dataset] for _ in range(n)]


def test_each_pass_covers_every_row_once_in_a_new_order_with_rows_kept_whole():
    x = np.arange(1000, dtype="float64").reshape(-1, 1) * 2  # float64, as pandas gives
    y = np.arange(1000, dtype="int32")
    feeds = Feeds([x, y])
    dataset = feeds.batches(x, y, 64, True)
    assert feeds.batches(x, y, 64, True) is dataset  # built once for every hop and model here
    first, second = passes(dataset, 2)
    assert [len(b[1]) for b in first] == [64] * 15 + [40]
    for batches in (first, second):
        ys = np.concatenate([b[1] for b in batches])
        assert sorted(ys) == list(range(1000))
        assert all((b[0][:, 0] == b[1] * 2).all() for b in batches)  # x and y of a row stay together
    assert first[0][0].dtype == np.float32  # floatx, as Keras casts float arrays
    assert not np.array_equal(np.concatenate([b[1] for b in first]), np.concatenate([b[1] for b in second]))
    ordered = np.concatenate([b[1] for b in passes(feeds.batches(x, y, 100, False), 1)[0]])
    assert list(ordered) == list(range(1000))


def test_arrays_made_anew_by_the_cell_go_to_fit_as_they_are():
    x, y, fresh = np.ones((10, 2)), np.zeros(10), np.zeros(10)
    feeds = Feeds([x, y])
    assert feeds.batches(x, fresh, 4, True) is None
    assert feeds.batches(fresh, None, 4, True) is None
    assert feeds.batches(x, None, 4, True) is not None  # fit(x) alone


def test_an_epoch_on_the_feed_trains_exactly_as_fit_on_the_arrays():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 5)).astype("float32"), rng.integers(0, 3, 300).astype("int32")

    def model():
        keras.utils.set_random_seed(1)
        m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
        m.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return m

    on_arrays, on_feed = model(), model()
    on_arrays.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    on_feed.fit(Feeds([x, y]).batches(x, y, 32, False), epochs=1, shuffle=False, verbose=0)
    for a, b in zip(on_arrays.get_weights(), on_feed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_worker_holds_one_copy_of_its_partition_in_tensorflow_not_two():
    # Under a memory cap (spark.executor.pyspark.memory) a second copy killed the hopper's workers.
    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    x, y = np.random.default_rng(0).random((60_000, 784), dtype="float32"), np.zeros(60_000, "int32")
    before = rss()
    dataset = Feeds([x, y]).batches(x, y, 64, True)
    for _ in dataset:  # a whole pass: what a hop does
        pass
    assert rss() - before < 1.5 * x.nbytes  # one copy (188 MB), which Keras' own fit makes as well
