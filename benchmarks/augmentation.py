"""Training augmentation: seconds per batch and fine detail kept, against the chain of Keras layers it replaced.

    python benchmarks/augmentation.py                     # TensorFlow (as tf.data runs it)
    KERAS_BACKEND=jax python benchmarks/augmentation.py   # JAX (compiled, as the PyDataset feed runs it)

Detail kept: the mean absolute Laplacian of the warped image over that of the original (a centre crop, so
the filled border does not count), averaged over the fixture X-rays and several draws; 1.0 would be no loss.
Prints figures, asserts nothing.
"""

import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import keras  # noqa: E402

from fracture_app.imaging import read_image  # noqa: E402
from fracture_app.preprocess import PreprocessSpec, prepare  # noqa: E402
from training import augment  # noqa: E402

SIZE, BATCH, REPEATS, DRAWS = 224, 64, 5, 5
FIXTURES = REPO / "tests" / "fixtures"


def earlier_geometric_chain(seed: int):
    """The geometric augmentation until the twelfth session: three layers, so three resamplings."""
    from keras import layers

    return keras.Sequential([
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(augment.ROTATION, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom(augment.ZOOM, fill_mode="constant", seed=seed + 2),
        layers.RandomTranslation(augment.SHIFT, augment.SHIFT, fill_mode="constant", seed=seed + 3),
    ])


def earlier_chain(seed: int):
    from keras import layers

    return keras.Sequential([
        earlier_geometric_chain(seed),
        layers.RandomBrightness(augment.BRIGHTNESS, value_range=(0.0, 1.0), seed=seed + 4),
        layers.RandomContrast(augment.CONTRAST, seed=seed + 5),
    ])


def compiled(function):
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(function)
    import tensorflow as tf

    return tf.function(function)


def median_seconds(function, *arguments) -> float:
    np.asarray(function(*arguments))  # compile
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        np.asarray(function(*arguments))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def detail(images: np.ndarray) -> np.ndarray:
    return np.array([np.abs(cv2.Laplacian(image[..., 0], cv2.CV_32F))[40:-40, 40:-40].mean() for image in images])


def main() -> None:
    paths = sorted(FIXTURES.rglob("*.jpg"))
    images = np.stack([prepare(read_image(path).pixels, PreprocessSpec(size=SIZE, channels=3)) for path in paths])
    batch = images[np.arange(BATCH) % len(images)]
    rows = augment.draw(np.random.default_rng(0), BATCH, SIZE)
    chain = earlier_chain(0)
    print(f"backend {keras.backend.backend()}; a batch of {BATCH} at {SIZE} px (median of {REPEATS}):")
    print(f"  single warp (training.augment)   {median_seconds(compiled(augment.apply), batch, rows):.3f} s")
    if keras.backend.backend() == "jax":  # Keras' random layers keep state: JAX runs them op by op
        print(f"  earlier chain of Keras layers    {median_seconds(lambda b: chain(b, training=True), batch):.3f} s (not compiled)")
    else:
        print(f"  earlier chain of Keras layers    {median_seconds(compiled(lambda b: chain(b, training=True)), batch):.3f} s")
    before = detail(images)
    single = [detail(np.asarray(augment.warp(images, augment.draw(np.random.default_rng(seed), len(images), SIZE))))
              / before for seed in range(DRAWS)]
    layered = [detail(np.asarray(earlier_geometric_chain(seed)(images, training=True))) / before for seed in range(DRAWS)]
    print(f"fine detail kept over {DRAWS * len(images)} warps of the fixture X-rays: single warp {np.mean(single):.3f}, "
          f"earlier chain {np.mean(layered):.3f}")


if __name__ == "__main__":
    main()
