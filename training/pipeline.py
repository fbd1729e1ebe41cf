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
from training.datasets import Sample, perceptual_hashes

log = logging.getLogger(__name__)

# Augmentation strengths: radiographs are taken at many angles, scales and exposures, rarely upside down.
ROTATION = 0.05  # fraction of a full turn (±18°)
ZOOM = 0.15
SHIFT = 0.08
BRIGHTNESS = 0.10
CONTRAST = 0.20
DECODE_WORKERS = min(8, os.cpu_count() or 1)


@dataclass
class LoadedImages:
    samples: list[Sample]  # those that could be read, in the order of `inputs`
    inputs: np.ndarray  # (n, size, size, channels) float32, exactly what `prepare` returns
    hashes: list[tuple[int, ...]]  # perceptual_hashes, to group copies
    shapes: list[tuple[int, int]]  # each image's (height, width) before preprocessing
    failures: list[tuple[str, str]]  # (path, reason) for files the reader refused
    cut_short: list[bool]  # truncated files whose missing rows the reader cut off (their boxes no longer fit)


def load_images(samples: list[Sample], spec: PreprocessSpec, progress: bool = True) -> LoadedImages:
    """Decode and prepare every sample once; unreadable files are reported, not fatal."""

    def one(sample: Sample):
        try:
            xray = read_image(sample.path)
        except FractureAppError as error:
            return sample, None, None, None, None, str(error)
        pixels = xray.pixels
        return (sample, prepare(pixels, spec), perceptual_hashes(pixels), pixels.shape[:2],
                "missing_fraction" in xray.metadata, None)

    kept, inputs, hashes, shapes, cut_short, failures = [], [], [], [], [], []
    with ThreadPoolExecutor(DECODE_WORKERS) as pool:
        results = pool.map(one, samples)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(samples), desc="decoding", unit="img", leave=False)
        for sample, prepared, phash, shape, cut, error in results:
            if error:
                failures.append((str(sample.path), error))
                continue
            kept.append(sample)
            inputs.append(prepared)
            hashes.append(phash)
            shapes.append(shape)
            cut_short.append(cut)
    for path, reason in failures:
        log.warning("skipped %s: %s", path, reason)
    shape = (0, spec.size, spec.size, spec.channels)
    return LoadedImages(kept, np.stack(inputs) if inputs else np.zeros(shape, np.float32), hashes, shapes, failures,
                        cut_short)


def augmenter(seed: int):
    import keras

    return keras.Sequential([geometric_augmenter(seed), photometric_augmenter(seed)], name="augment")


def geometric_augmenter(seed: int):
    """Moves pixels (each layer its own seed, or they would all draw the same numbers): applied to the image and its fracture-box mask together (training.box_supervision)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomRotation(ROTATION, fill_mode="constant", seed=seed + 1),
            layers.RandomZoom(ZOOM, fill_mode="constant", seed=seed + 2),
            layers.RandomTranslation(SHIFT, SHIFT, fill_mode="constant", seed=seed + 3),
        ],
        name="geometric",
    )


def photometric_augmenter(seed: int):
    """Changes exposure only: applied to the image, never to a mask."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomBrightness(BRIGHTNESS, value_range=(0.0, 1.0), seed=seed + 4),
            layers.RandomContrast(CONTRAST, seed=seed + 5),
        ],
        name="photometric",
    )


def on_tensorflow() -> bool:
    """Whether Keras runs on TensorFlow (tf.data feeds it) or another backend, e.g. JAX on a GPU machine
    without TensorFlow (a Keras PyDataset feeds it, with the same augmentation layers)."""
    import keras

    return keras.backend.backend() == "tensorflow"


class BatchOrder:
    """Which rows make each batch: a new random order each epoch when shuffling, rows sorted within a batch."""

    def __init__(self, count: int, batch_size: int, shuffle: bool, seed: int = 0):
        self.count, self.batch_size, self.shuffle = count, batch_size, shuffle
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def next_epoch(self) -> list[np.ndarray]:
        order = self._rng.permutation(self.count) if self.shuffle else np.arange(self.count)
        return [np.sort(order[start : start + self.batch_size]) for start in range(0, self.count, self.batch_size)]


def tf_data_batches(arrays: tuple[np.ndarray, ...], batch_size: int, shuffle: bool, seed: int = 0):
    """A tf.data dataset of batches from same-length arrays (float32 unless uint8 or int64), in a new
    random order each epoch when `shuffle`; the arrays stay in memory and are never copied whole."""
    import tensorflow as tf

    batch_order = BatchOrder(len(arrays[0]), batch_size, shuffle, seed)

    def generate():
        for chosen in batch_order.next_epoch():
            yield tuple(array[chosen] for array in arrays)

    kept_types = {np.dtype(np.uint8): tf.uint8, np.dtype(np.int64): tf.int64}
    signature = tuple(tf.TensorSpec((None, *array.shape[1:]), kept_types.get(array.dtype, tf.float32))
                      for array in arrays)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    # Tell Keras how many batches an epoch has, so progress bars and callbacks know where the end is.
    return dataset.apply(tf.data.experimental.assert_cardinality(len(batch_order)))


def py_dataset_batches(arrays: tuple[np.ndarray, ...], batch_size: int, shuffle: bool, seed: int = 0,
                       transform=None):
    """The same batches as a keras.utils.PyDataset, which any Keras backend can fit on; each batch
    passed through `transform(*batch)` when given."""
    import keras

    class ArrayBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.order = BatchOrder(len(arrays[0]), batch_size, shuffle, seed)
            self.batches = self.order.next_epoch()

        def __len__(self):
            return len(self.order)

        def __getitem__(self, index):
            batch = tuple(array[self.batches[index]] for array in arrays)
            return transform(*batch) if transform else batch

        def on_epoch_end(self):
            self.batches = self.order.next_epoch()

    return ArrayBatches()


def feed(arrays: tuple[np.ndarray, ...], batch_size: int, shuffle: bool, seed: int = 0, transform=None):
    """Batches for Keras' fit, each through `transform(*batch)` (written in keras.ops, so it runs in either
    feed): a prefetched tf.data pipeline on TensorFlow; a PyDataset on other backends, where the transform
    runs on the accelerator between training steps."""
    if not on_tensorflow():
        return py_dataset_batches(arrays, batch_size, shuffle, seed, transform)
    import tensorflow as tf

    dataset = tf_data_batches(arrays, batch_size, shuffle, seed)
    if transform is not None:
        dataset = dataset.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def batches(inputs: np.ndarray, labels: np.ndarray, batch_size: int, training: bool, seed: int = 0):
    """Shuffled and augmented for training, plain for evaluation."""
    if not training:
        return feed((inputs, labels), batch_size, False, seed)
    from keras import ops

    augment = augmenter(seed)

    def augmented(images, labels_):
        return ops.clip(augment(images, training=True), 0.0, 1.0), labels_

    return feed((inputs, labels), batch_size, True, seed, augmented)


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights so the rarer class counts as much as the common one."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    counts[counts == 0] = 1.0
    weights = counts.sum() / (num_classes * counts)
    return {index: float(weight) for index, weight in enumerate(weights)}
