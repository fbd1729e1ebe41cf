"""How many fractures from another source the binary model finds: every image under --data shows a fracture.

    python -m training.external_check --model models/fracture_binary.keras --data ../shared/data/bone_break --write

Bone Break is such a source: ten types of fracture, pictures from journals and web pages, none of which the
binary model (trained on FracAtlas) has seen. Only sensitivity can be measured on it (there are no healthy
X-rays), at the card's decision threshold, by the app's own road (with --orientation, the whole of it: each
picture first set the way up the orientation model takes for FracAtlas's). A Roboflow export holds several augmented
copies of one picture, which are not independent evidence, so the share is also counted per source picture
(the mean of its copies' probabilities against the threshold), overall and by the folder an image sits in.
"""

import argparse
import sys
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fracture_app import config
from fracture_app.data_layout import Sample, image_files
from fracture_app.errors import FractureAppError
from training.card import command_line, update_card
from training.datasets import source_stem
from training.evaluate import BATCH_SIZE, predict_files
from training.metrics import wilson_interval


TOP_FOLDER = "(the folder itself)"  # for images directly under --data


def share_found(found: int, total: int) -> dict:
    return {"images": total, "found": found, "share": found / total if total else None,
            "interval": wilson_interval(found, total)}


def measure(paths: list[Path], probabilities: np.ndarray, data_dir: Path, threshold: float) -> dict:
    """Overall and per top-level folder: the share of images, and of source pictures, called fractured."""
    folder_of = [parts[0] if len(parts) > 1 else TOP_FOLDER for parts in (p.relative_to(data_dir).parts for p in paths)]
    called = probabilities >= threshold
    pictures = defaultdict(list)
    for path, folder, probability in zip(paths, folder_of, probabilities):
        pictures[folder, source_stem(path)].append(probability)
    picture_called = {key: float(np.mean(values)) >= threshold for key, values in pictures.items()}

    def summary(folder: str | None) -> dict:
        mine = [i for i, f in enumerate(folder_of) if folder in (None, f)]
        keys = [key for key in picture_called if folder in (None, key[0])]
        return {**share_found(int(called[mine].sum()), len(mine)),
                "source_pictures": share_found(sum(picture_called[key] for key in keys), len(keys))}

    return {**summary(None), "by_folder": {folder: summary(folder) for folder in sorted(set(folder_of))}}


def probabilities_by_the_whole_road(model, orientation, paths: list[Path]) -> tuple[np.ndarray, int]:
    """The binary model's probabilities as the app reaches them (the Diagnoser, which turns a picture back where
    the orientation model says so), and how many pictures were turned. (The files are read a second time.)"""
    from fracture_app.diagnosis import Diagnoser
    from fracture_app.imaging import read_image

    diagnoser = Diagnoser(model, None, orientation=orientation)
    readings = [reading for start in range(0, len(paths), BATCH_SIZE)
                for reading in diagnoser.diagnose_batch([read_image(path) for path in paths[start:start + BATCH_SIZE]])]
    return np.array([reading.fracture_probability for reading in readings]), sum(bool(r.turn) for r in readings)


def print_result(name: str, result: dict) -> None:
    def line(label: str, part: dict) -> str:
        pictures = part["source_pictures"]
        return (f"{label:<28}{part['found']:>5}/{part['images']:<5}{part['share']:>7.1%}  "
                f"[{part['interval'][0]:.1%}–{part['interval'][1]:.1%}]   source pictures "
                f"{pictures['found']}/{pictures['images']} ({pictures['share']:.1%})")

    print(f"fractures called fractured on {name}, at threshold {result['threshold']:.4f} "
          f"({result['skipped']} unreadable images left out):")
    print(line("all", result))
    for folder, part in result["by_folder"].items():
        print(line(folder, part))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.external_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the binary model, with its card beside it")
    parser.add_argument("--data", type=Path, required=True, help="a folder whose every image shows a fracture")
    parser.add_argument("--name", default=None, help="the data set's name in the card (default: the folder's)")
    parser.add_argument("--write", action="store_true", help="record the result in the model card")
    parser.add_argument("--orientation", type=Path, metavar="MODEL",
                        help="set each picture upright with this orientation model first, as the app does "
                             "(printed only: the card records the fracture model's own figure)")
    args = parser.parse_args(argv)
    if args.orientation and args.write:
        parser.error("--orientation measures the app's whole road, which the fracture model's card does not record")
    from fracture_app.models import load_model

    name = args.name or args.data.resolve().name
    try:
        model = load_model(args.model)
        if model.task != config.BINARY_TASK:
            raise FractureAppError("the external check measures the binary model")
        orientation = load_model(args.orientation, config.ORIENTATION_TASK) if args.orientation else None
        samples = [Sample(path, 1) for path in image_files(args.data)]
        if not samples:
            raise FractureAppError(f"no images under {args.data}")
        kept, probabilities, skipped = predict_files(model, samples)
        if not kept:
            raise FractureAppError(f"none of the {len(samples)} images under {args.data} could be read "
                                   f"(first: {skipped[0]})")
        if orientation:
            probabilities, turned = probabilities_by_the_whole_road(model, orientation, [s.path for s in kept])
            print(f"{turned} of {len(kept)} pictures set upright first by {args.orientation.name}")
    except FractureAppError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result = {**measure([s.path for s in kept], probabilities, args.data, model.card.threshold),
              "threshold": model.card.threshold, "model_version": model.card.version, "skipped": len(skipped),
              "command": command_line("training.external_check", argv),
              "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    print_result(name, result)
    if args.write:
        update_card(args.model, {"external_checks": {**model.card.data.get("external_checks", {}), name: result}})
        print(f"written into {args.model}'s card under external_checks[{name!r}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
