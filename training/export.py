"""Export a trained model to TensorFlow Lite for mobile use, and check it agrees with the Keras model.

    python -m training.export --model models/fracture_binary.keras --format tflite [--check-images DIR]

The `.tflite` file takes the same prepared input as the Keras model (see the card's preprocessing) and
returns the logits the app uses (averaged over the image and its mirror where the card's `test_time_flip`
says so); apply the card's calibration to get probabilities.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from fracture_app import import_tensorflow_quietly
from fracture_app.data_layout import image_files
from fracture_app.errors import FractureAppError
from fracture_app.imaging import read_image
from fracture_app.preprocess import prepare

# Largest difference in logits we accept between TFLite and Keras on real X-rays (float32 both ways).
AGREEMENT_TOLERANCE = 1e-3
DEFAULT_CHECK_IMAGES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CHECK_IMAGE_COUNT = 8


def to_tflite(keras_model) -> bytes:
    tf = import_tensorflow_quietly()
    return tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()


def tflite_logits(tflite_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    tf = import_tensorflow_quietly()
    interpreter = tf.lite.Interpreter(model_content=tflite_bytes)
    interpreter.allocate_tensors()
    entry, exit_ = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outputs = []
    for one in inputs:
        interpreter.set_tensor(entry["index"], one[None].astype(np.float32))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(exit_["index"])[0])
    return np.array(outputs)


def agreement(model, tflite_bytes: bytes, image_paths: list[Path]) -> float:
    """Largest absolute logit difference between the two on real X-rays, prepared the app's way."""
    inputs = np.stack([prepare(read_image(path).pixels, model.spec) for path in image_paths])
    keras_logits = model.logits(inputs)
    return float(np.max(np.abs(keras_logits - tflite_logits(tflite_bytes, inputs))))


def check_images(folder: Path, count: int = CHECK_IMAGE_COUNT) -> list[Path]:
    return image_files(Path(folder))[:count]


def output_path(model_path: Path, out: Path | None) -> Path:
    """Where the .tflite goes, checked before the minutes of conversion rather than after."""
    if out is None:
        return model_path.with_suffix(".tflite")
    if out.is_dir():
        return out / model_path.with_suffix(".tflite").name
    if not out.parent.is_dir():
        raise FractureAppError(f"--out: no folder {out.parent} to write {out.name} into")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a .keras file with its model card beside it")
    parser.add_argument("--format", choices=("tflite",), default="tflite")
    parser.add_argument("--out", type=Path,
                        help="output file, or a folder to write it into (default: beside the model, .tflite)")
    parser.add_argument("--check-images", type=Path, default=DEFAULT_CHECK_IMAGES,
                        help="folder of real X-rays to compare the two models on (default: the test fixtures)")
    args = parser.parse_args(argv)
    from fracture_app.models import as_the_app_runs_it, load_model

    try:
        out = output_path(args.model, args.out)
        model = load_model(args.model)
        images = check_images(args.check_images)
        if not images:
            raise FractureAppError(f"no .jpg X-rays in {args.check_images} to check the export against")
        tflite_bytes = to_tflite(as_the_app_runs_it(model.keras_model, model.card.flip_average))
        difference = agreement(model, tflite_bytes, images)
    except FractureAppError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if difference > AGREEMENT_TOLERANCE:
        print(f"error: TFLite disagrees with Keras by {difference:.2e} in logits (> {AGREEMENT_TOLERANCE})", file=sys.stderr)
        return 1
    try:
        out.write_bytes(tflite_bytes)
    except OSError as error:
        print(f"error: could not write {out}: {error.strerror or error}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({len(tflite_bytes) / 1e6:.1f} MB); agrees with Keras on {len(images)} real X-rays "
          f"(largest logit difference {difference:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
