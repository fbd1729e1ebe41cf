"""Speed and memory of the shipped models on this machine: prints figures, asserts nothing.

    python benchmarks/speed.py [--models DIR] [--images DIR] [--skip-training]

Measures: cold start to first diagnosis; warm latency of each model and of Grad-CAM; a warm single-image
diagnosis (both models + heat map); batch command-line images per second against a naive loop
(decode one image, `model.predict` on it, repeat); peak resident memory; training images per second per
architecture at its default size; this CPU's float32 matrix-product rate and the share of it that batch
inference reaches (from the models' multiply-add counts).
"""

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from fracture_app import config, import_tensorflow_quietly  # noqa: E402

REPEATS = 10
MATMUL_SIZE = 2048
TRAIN_STEPS = 3


def median_seconds(function, repeats: int = REPEATS) -> float:
    function()  # warm-up: tracing, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_gflops() -> float:
    tf = import_tensorflow_quietly()
    a = tf.random.normal((MATMUL_SIZE, MATMUL_SIZE))
    seconds = median_seconds(lambda: tf.linalg.matmul(a, a).numpy(), repeats=5)
    return 2 * MATMUL_SIZE**3 / seconds / 1e9


def multiply_adds(model) -> int:
    """Multiply-adds of one forward pass: convolutions and dense layers, nested models included."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += multiply_adds(layer)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            total += h * w * c * int(np.prod(layer.kernel_size))
        elif isinstance(layer, keras.layers.SeparableConv2D):
            _, h, w, out = layer.output.shape
            c = layer.input.shape[-1]
            total += h * w * c * int(np.prod(layer.kernel_size)) + h * w * c * out
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, out = layer.output.shape
            total += h * w * out * layer.input.shape[-1] * int(np.prod(layer.kernel_size)) // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def cold_start(models_dir: Path, image: Path) -> float:
    code = ("import time; s=time.perf_counter();"
            "from fracture_app.diagnosis import Diagnoser; from fracture_app.imaging import read_image;"
            f"Diagnoser.from_dir({str(models_dir)!r}).diagnose(read_image({str(image)!r}));"
            "print(time.perf_counter()-s)")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - start
    return wall if result.returncode == 0 else float("nan")


def batch_cli(models_dir: Path, images: list[Path]) -> float:
    from fracture_app.diagnosis import Diagnoser
    from fracture_app.predict import diagnose_files

    diagnoser = Diagnoser.from_dir(models_dir)
    list(diagnose_files(diagnoser, images[:16], None, False))  # warm-up
    start = time.perf_counter()
    list(diagnose_files(diagnoser, images, None, False))
    return len(images) / (time.perf_counter() - start)


def naive_loop(models_dir: Path, images: list[Path]) -> float:
    """The way many notebooks do it: decode one image, model.predict on it, next."""
    from fracture_app.imaging import read_image
    from fracture_app.models import load_model, model_path_for
    from fracture_app.preprocess import mirrored, prepare

    models = [load_model(model_path_for(task, models_dir)) for task in config.MODEL_FILES
              if model_path_for(task, models_dir).is_file()]  # (the app reads pictures as uploaded without one)
    for model in models:
        model.keras_model.predict(np.zeros((1, model.spec.size, model.spec.size, model.spec.channels), np.float32), verbose=0)
    start = time.perf_counter()
    for path in images:
        pixels = read_image(path).pixels
        for model in models:
            one = prepare(pixels, model.spec)[None]
            # The same work the app does: the mirror too where the card asks for it.
            model.keras_model.predict(np.concatenate([one, mirrored(one)]) if model.card.flip_average else one, verbose=0)
    return len(images) / (time.perf_counter() - start)


def multiply_adds_per_image(model) -> int:
    """The model's multiply-adds, twice where its card averages the answer over the image and its mirror."""
    return multiply_adds(model.keras_model) * (2 if model.card.flip_average else 1)


def training_rate(architecture: str, task: str) -> float:
    import keras

    from fracture_app.preprocess import PreprocessSpec
    from training.architectures import CHANNELS, build

    size = config.DEFAULT_IMG_SIZE[task]
    spec = PreprocessSpec(size=size, channels=CHANNELS[architecture])
    model = build(architecture, spec, 1)
    model.compile(optimizer="adam", loss=keras.losses.BinaryCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((32, size, size, spec.channels), np.float32)
    y = np.zeros((32, 1), np.float32)
    seconds = median_seconds(lambda: model.train_on_batch(x, y), repeats=TRAIN_STEPS)
    return 32 / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=config.MODELS_DIR)
    parser.add_argument("--images", type=Path, default=config.SAMPLE_IMAGES_DIR)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    images = sorted(p for p in args.images.rglob("*.jpg"))
    if not images:
        print(f"no .jpg images under {args.images}", file=sys.stderr)
        return 2
    batch_images = (images * (64 // len(images) + 1))[:64]
    print(f"machine: {os.cpu_count()} cores; images: {len(images)} from {args.images}")
    print(f"cold start to first diagnosis (new process): {cold_start(args.models, images[0]):.1f} s")

    from fracture_app.diagnosis import Diagnoser
    from fracture_app.imaging import read_image
    from fracture_app.preprocess import prepare, prepare_batch

    diagnoser = Diagnoser.from_dir(args.models)
    xray = read_image(images[0])
    gflops = matmul_gflops()
    print(f"float32 matrix product ({MATMUL_SIZE}²): {gflops:.1f} GFLOP/s")
    for task, model in diagnoser.every_model.items():
        one = prepare(xray.pixels, model.spec)[None]
        latency = median_seconds(lambda: model.probabilities(one))
        heat = ("no heat map" if task not in config.TASKS  # (of which way up an X-ray lies)
                else f"Grad-CAM {1000 * median_seconds(lambda: diagnoser.gradcam(task).heatmap(one[0], 1)):.0f} ms")
        batch = prepare_batch([read_image(p).pixels for p in batch_images[:32]], model.spec)
        batch_seconds = median_seconds(lambda: model.probabilities(batch), repeats=3)
        macs = multiply_adds_per_image(model)
        achieved = 2 * macs * len(batch) / batch_seconds / 1e9
        print(f"{task} ({model.card.data.get('architecture')}, {model.spec.size} px, {macs / 1e9:.2f} GMAC/image): "
              f"warm single {latency * 1000:.0f} ms, {heat}, "
              f"batch of 32 {len(batch) / batch_seconds:.1f} img/s = {achieved:.1f} GFLOP/s "
              f"({100 * achieved / gflops:.0f}% of the matrix-product rate)")
    warm = median_seconds(lambda: diagnoser.diagnose(read_image(images[0]), heatmap_tasks=(config.BINARY_TASK,)))
    print(f"warm single-image diagnosis (read + every model + binary heat map): {warm:.2f} s")
    fast, naive = batch_cli(args.models, batch_images), naive_loop(args.models, batch_images)
    macs_per_image = sum(multiply_adds_per_image(model) for model in diagnoser.every_model.values())
    cli_gflops = 2 * macs_per_image * fast / 1e9
    print(f"batch command line: {fast:.1f} img/s = {cli_gflops:.1f} GFLOP/s in the models "
          f"({100 * cli_gflops / gflops:.0f}% of the matrix-product rate, decoding included); "
          f"naive loop: {naive:.1f} img/s ({fast / naive:.1f}x)")
    print(f"peak resident memory so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if not args.skip_training:
        for architecture, task in (("custom_cnn", config.BINARY_TASK), ("resnet50", config.TYPE_TASK),
                                   ("densenet121", config.TYPE_TASK), ("mobilenetv2", config.TYPE_TASK)):
            print(f"training {architecture} at {config.DEFAULT_IMG_SIZE[task]} px: "
                  f"{training_rate(architecture, task):.1f} img/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
