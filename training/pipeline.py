"""Files → model-ready arrays → augmented, shuffled, prefetched batches.

Every image is decoded once, through the same reader and `prepare` the app uses, and kept in memory:
epochs then cost only augmentation and the model, never JPEG decoding.
"""

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from fracture_app.errors import FractureAppError
from fracture_app.imaging import read_image
from fracture_app.preprocess import PreprocessSpec, prepare
from training import augment
from training.datasets import THUMBNAIL_SIDE, Sample, cut_short_copies, perceptual_hashes, thumbnail

log = logging.getLogger(__name__)

DECODE_WORKERS = min(8, os.cpu_count() or 1)


@dataclass
class LoadedImages:
    samples: list[Sample]  # those that could be read, in the order of `inputs`
    inputs: np.ndarray  # (n, size, size, channels) float32, exactly what `prepare` returns
    hashes: list[tuple[int, ...]]  # perceptual_hashes, to group copies
    shapes: list[tuple[int, int]]  # each image's (height, width) before preprocessing
    failures: list[tuple[str, str]]  # (path, reason) for files the reader refused
    cut_short: list[bool]  # truncated files whose missing rows the reader cut off (their boxes no longer fit)
    thumbnails: np.ndarray  # (n, THUMBNAIL_SIDE, THUMBNAIL_SIDE) float32, to find cut-short copies
    kept_shares: list[float]  # of each file's picture, the share the reader could read (1.0 for a complete file)

    def copies(self) -> list[tuple[int, int]]:
        """Pairs of pictures of which one is a cut-short copy of the other, for datasets.assign_groups."""
        return cut_short_copies(self.thumbnails, self.kept_shares)


def load_images(samples: list[Sample], spec: PreprocessSpec, progress: bool = True) -> LoadedImages:
    """Decode and prepare every sample once; unreadable files are reported, not fatal."""

    def one(sample: Sample):
        try:
            xray = read_image(sample.path)
        except FractureAppError as error:
            return sample, None, None, None, None, None, None, str(error)
        pixels = xray.pixels
        return (sample, prepare(pixels, spec), perceptual_hashes(pixels), pixels.shape[:2],
                "missing_fraction" in xray.metadata, thumbnail(pixels), 1.0 - xray.metadata.get("missing_fraction", 0.0),
                None)

    kept, inputs, hashes, shapes, cut_short, thumbnails, kept_shares, failures = [], [], [], [], [], [], [], []
    with ThreadPoolExecutor(DECODE_WORKERS) as pool:
        results = pool.map(one, samples)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(samples), desc="decoding", unit="img", leave=False)
        for sample, prepared, phash, shape, cut, small, kept_share, error in results:
            if error:
                failures.append((str(sample.path), error))
                continue
            kept.append(sample)
            inputs.append(prepared)
            hashes.append(phash)
            shapes.append(shape)
            cut_short.append(cut)
            thumbnails.append(small)
            kept_shares.append(kept_share)
    for path, reason in failures:
        log.warning("skipped %s: %s", path, reason)
    shape = (0, spec.size, spec.size, spec.channels)
    side = (0, THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    return LoadedImages(kept, np.stack(inputs) if inputs else np.zeros(shape, np.float32), hashes, shapes, failures,
                        cut_short, np.stack(thumbnails) if thumbnails else np.zeros(side, np.float32), kept_shares)


def on_tensorflow() -> bool:
    """Whether Keras runs on TensorFlow (tf.data feeds it) or another backend, e.g. JAX on a GPU machine
    without TensorFlow (a Keras PyDataset feeds it, with the same augmentation from training.augment)."""
    import keras

    return keras.backend.backend() == "tensorflow"


class BatchOrder:
    """Which rows make each batch: a new random order each epoch when shuffling, rows sorted within a batch;
    with `draw(rng, count)`, also each row's random augmentation for the epoch (one more array in its batch)."""

    def __init__(self, count: int, batch_size: int, shuffle: bool, seed: int = 0, draw=None):
        self.count, self.batch_size, self.shuffle, self.draw = count, batch_size, shuffle, draw
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def next_epoch(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """(rows, their augmentation draws or None) for each batch of the next epoch."""
        order = self._rng.permutation(self.count) if self.shuffle else np.arange(self.count)
        draws = self.draw(self._rng, self.count) if self.draw else None
        return [(np.sort(order[start : start + self.batch_size]),
                 None if draws is None else draws[start : start + self.batch_size])
                for start in range(0, self.count, self.batch_size)]


def take(arrays: tuple[np.ndarray, ...], batch: tuple[np.ndarray, np.ndarray | None]) -> tuple[np.ndarray, ...]:
    rows, draws = batch
    return tuple(array[rows] for array in arrays) + (() if draws is None else (draws,))


def tf_data_batches(arrays: tuple[np.ndarray, ...], batch_size: int, shuffle: bool, seed: int = 0, draw=None):
    """A tf.data dataset of batches from same-length arrays (float32 unless uint8 or int64), in a new
    random order each epoch when `shuffle`; the arrays stay in memory and are never copied whole."""
    import tensorflow as tf

    batch_order = BatchOrder(len(arrays[0]), batch_size, shuffle, seed, draw)

    def generate():
        for batch in batch_order.next_epoch():
            yield take(arrays, batch)

    kept_types = {np.dtype(np.uint8): tf.uint8, np.dtype(np.int64): tf.int64}
    shapes = [array.shape[1:] for array in arrays] + ([draw(np.random.default_rng(), 0).shape[1:]] if draw else [])
    types = [kept_types.get(array.dtype, tf.float32) for array in arrays] + ([tf.float32] if draw else [])
    signature = tuple(tf.TensorSpec((None, *shape), dtype) for shape, dtype in zip(shapes, types))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    # Tell Keras how many batches an epoch has, so progress bars and callbacks know where the end is.
    return dataset.apply(tf.data.experimental.assert_cardinality(len(batch_order)))


def py_dataset_batches(arrays: tuple[np.ndarray, ...], batch_size: int, shuffle: bool, seed: int = 0,
                       transform=None, draw=None):
    """The same batches as a keras.utils.PyDataset, which any Keras backend can fit on; each batch
    passed through `transform(*batch)` when given, compiled once per batch shape on JAX."""
    import keras

    if transform is not None and keras.backend.backend() == "jax":
        import jax

        transform = jax.jit(transform)

    class ArrayBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.order = BatchOrder(len(arrays[0]), batch_size, shuffle, seed, draw)
            self.batches = self.order.next_epoch()

        def __len__(self):
            return len(self.order)

        def __getitem__(self, index):
            batch = take(arrays, self.batches[index])
            return transform(*batch) if transform else batch

        def on_epoch_end(self):
            self.batches = self.order.next_epoch()

    return ArrayBatches()


def feed(arrays: tuple[np.ndarray, ...], batch_size: int, shuffle: bool, seed: int = 0, transform=None, draw=None):
    """Batches for Keras' fit, each through `transform(*batch)` (written in keras.ops, so it runs in either
    feed), with `draw(rng, count)`'s rows for the batch as its last argument when given: a prefetched
    tf.data pipeline on TensorFlow; a PyDataset on other backends, where the transform runs on the
    accelerator."""
    if not on_tensorflow():
        return py_dataset_batches(arrays, batch_size, shuffle, seed, transform, draw)
    import tensorflow as tf

    dataset = tf_data_batches(arrays, batch_size, shuffle, seed, draw)
    if transform is not None:
        dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def batches(inputs: np.ndarray, labels: np.ndarray, batch_size: int, training: bool, seed: int = 0):
    """Shuffled and augmented (training.augment) for training, plain for evaluation."""
    if not training:
        return feed((inputs, labels), batch_size, False, seed)
    def augmented(images, labels_, draws):
        return augment.apply(images, draws), labels_

    return feed((inputs, labels), batch_size, True, seed, augmented, augment.drawer(inputs.shape[1]))


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights so the rarer class counts as much as the common one."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    counts[counts == 0] = 1.0
    weights = counts.sum() / (num_classes * counts)
    return {index: float(weight) for index, weight in enumerate(weights)}
