"""Train the orientation model: which way up an X-ray lies, learnt from FracAtlas without any new label.

    python -m training.orientation --data ../shared/data/fracatlas --split models/fracture_binary_split.csv --out runs/orientation
    python -m training.orientation --measure models/orientation.keras --data ../shared/data/fracatlas --split models/fracture_binary_split.csv

FracAtlas X-rays are stored upright, so the label comes free: every epoch turns each training X-ray a random
number of quarter turns and the network names the number. It trains on the training rows of the fracture model's
split, so that model's validation and test X-rays stay unseen by both. Its threshold is the lowest of THRESHOLDS at
which at most FALSE_TURN_LIMIT of the upright validation X-rays are taken for turned; the card records, at that
threshold, how the validation and test X-rays fare in all four turns.
"""

import argparse
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fracture_app import config, import_tensorflow_quietly
from fracture_app.models import artifact_paths, softmax
from fracture_app.orientation import UPRIGHT, detected_turn
from fracture_app.preprocess import PreprocessSpec
from training import architectures, augment
from training.card import INTENDED_USE, command_line, hardware_description, write_atomically
from training import datasets
from training.datasets import SPLITS
from training.metrics import wilson_interval

log = logging.getLogger(__name__)

IMG_SIZE = 128  # which way up shows at a glance: no fracture-sized detail needed
EPOCHS = 30
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
SEED = 1
TURNS = len(config.ORIENTATIONS)
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
FALSE_TURN_LIMIT = 0.01  # of upright validation X-rays taken for turned
SHIPPING_FOUND_SHARE = 0.90  # of turned validation X-rays taken for turned the right way (HISTORY, 21st session)
AUGMENT_CHUNK = 256


def turned(images: np.ndarray, turns) -> np.ndarray:
    """Each (size, size, channels) image turned its number of quarter turns anticlockwise."""
    return np.stack([np.rot90(image, turn) for image, turn in zip(images, turns)]) if len(images) else images


def every_turn(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All four turns of every image, and each one's turn."""
    turns = np.repeat(np.arange(TURNS), len(images))
    return turned(np.concatenate([images] * TURNS), turns), turns


def augmented(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """training.augment's mirror, tilt, zoom, shift and exposure, applied before the turn: a mirror after a quarter
    turn would swap the two quarter turns' answers."""
    rows = augment.draw(rng, len(images), images.shape[1])
    return np.concatenate([np.asarray(augment.apply(images[start:start + AUGMENT_CHUNK], rows[start:start + AUGMENT_CHUNK]))
                           for start in range(0, len(images), AUGMENT_CHUNK)])


def turn_figures(probabilities: np.ndarray, turns: np.ndarray, threshold: float | None) -> dict:
    """How X-rays in all four turns fare at `threshold`: upright ones taken for turned; turned ones set upright,
    set wrong (taken for another turn) or left as they lie."""
    answers = np.array([detected_turn(row, threshold) for row in probabilities])
    upright, lying = turns == UPRIGHT, turns != UPRIGHT
    counts = {"upright": int(upright.sum()), "upright_taken_for_turned": int((answers[upright] != UPRIGHT).sum()),
              "turned": int(lying.sum()), "turned_set_upright": int((answers[lying] == turns[lying]).sum()),
              "turned_set_wrong": int(((answers != UPRIGHT) & (answers != turns))[lying].sum())}
    counts["turned_left_as_they_lie"] = counts["turned"] - counts["turned_set_upright"] - counts["turned_set_wrong"]
    return {**counts, "accuracy": float((probabilities.argmax(1) == turns).mean()),
            "false_turn_share": counts["upright_taken_for_turned"] / max(1, counts["upright"]),
            "found_share": counts["turned_set_upright"] / max(1, counts["turned"]),
            "found_interval": wilson_interval(counts["turned_set_upright"], counts["turned"]),
            "false_turn_interval": wilson_interval(counts["upright_taken_for_turned"], counts["upright"])}


def choose_threshold(probabilities: np.ndarray, turns: np.ndarray) -> float | None:
    """The lowest of THRESHOLDS keeping upright X-rays taken for turned within FALSE_TURN_LIMIT; None if none does."""
    for threshold in THRESHOLDS:
        if turn_figures(probabilities, turns, threshold)["false_turn_share"] <= FALSE_TURN_LIMIT:
            return threshold
    return None


def train(inputs: dict[str, np.ndarray], spec: PreprocessSpec, epochs: int, seed: int):
    """The network at its best validation epoch, with one row per epoch (loss, validation accuracy)."""
    import keras

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = architectures.custom_cnn(spec, TURNS)
    steps = epochs * int(np.ceil(len(inputs["train"]) / BATCH_SIZE))
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    val_inputs, val_turns = every_turn(inputs["val"])
    history, best_accuracy, best_weights = [], -1.0, None
    for epoch in range(1, epochs + 1):
        turns = rng.permutation(np.arange(len(inputs["train"])) % TURNS)  # each turn equally often
        batch = turned(augmented(inputs["train"], rng), turns)
        loss = model.fit(batch, turns, batch_size=BATCH_SIZE, epochs=1, verbose=0).history["loss"][0]
        accuracy = float((model.predict(val_inputs, batch_size=128, verbose=0).argmax(1) == val_turns).mean())
        history.append({"epoch": epoch, "loss": float(loss), "val_accuracy": accuracy})
        log.info("epoch %d: loss %.3f, validation accuracy %.3f", epoch, loss, accuracy)
        if accuracy > best_accuracy:
            best_accuracy, best_weights = accuracy, model.get_weights()
    clean = architectures.custom_cnn(spec, TURNS)  # the best weights, without the optimizer's state
    clean.set_weights(best_weights)
    return clean, history


def measure(model, inputs: dict[str, np.ndarray]) -> tuple[float | None, dict]:
    """The threshold chosen on validation, and the figures of validation and test at it."""
    probabilities = {}
    for split in ("val", "test"):
        images, turns = every_turn(inputs[split])
        probabilities[split] = (softmax(model.predict(images, batch_size=128, verbose=0)), turns)
    threshold = choose_threshold(*probabilities["val"])  # None: the app never turns a picture
    return threshold, {split: turn_figures(*probabilities[split], threshold) for split in probabilities}


def remeasure(model_path: Path, data: Path, split_file: Path) -> dict:
    """A shipped orientation model's figures measured again, at its card's threshold, on the split file's validation
    and test X-rays: what its card says, if the file is the one it describes."""
    from fracture_app.models import load_model
    from training.pipeline import load_images

    model = load_model(model_path, config.ORIENTATION_TASK)
    rows = [row for row in split_rows(data, split_file, SEED) if row.split in ("val", "test")]
    loaded = load_images(rows, model.spec, progress=False)
    figures = {}
    for split in ("val", "test"):
        if not any(row.split == split for row in loaded.samples):
            raise datasets.DatasetError(f"{split_file} holds no readable {split} X-ray under {data}")
        images, turns = every_turn(inputs_of(loaded, split))
        probabilities = np.concatenate([model.probabilities(images[start:start + 512])
                                        for start in range(0, len(images), 512)])
        figures[split] = turn_figures(probabilities, turns, model.card.turn_threshold)
    return figures


def redo_validation_choice(model_path: Path, data: Path, split_file: Path, command: str) -> dict:
    """The threshold chosen again on the split file's validation X-rays, and the figures at it, written into the
    model's card (for a split file mended since the model was trained: training.mend_split). Returns the card."""
    from fracture_app.models import load_model
    from training.card import card_path_for, write_card
    from training.pipeline import load_images

    model = load_model(model_path, config.ORIENTATION_TASK)
    rows = split_rows(data, split_file, SEED)
    loaded = load_images([row for row in rows if row.split in ("val", "test")], model.spec, progress=False)
    threshold, metrics = measure(model.keras_model, {split: inputs_of(loaded, split) for split in ("val", "test")})
    card, now = dict(model.card.data), datetime.now(timezone.utc)
    card.update({
        "version": f"{model.card.version.split('+')[0]}+choices-{now:%Y.%m.%d-%H%M%S}",  # it may now answer otherwise
        "threshold": threshold, "metrics": metrics,
        # what it learnt from stays as it was: images a mending moves into training were never trained on
        "data": {**card["data"], "split_file": str(split_file), "split_sizes": datasets.split_sizes(rows),
                 "trained_split_sizes": card["data"].get("trained_split_sizes", card["data"]["split_sizes"])},
        "validation_choices_redone": {"command": command, "at": now.isoformat(timespec="seconds"),
                                      "version_before": model.card.version},
    })
    write_card(card_path_for(model_path), card)
    return card


def inputs_of(loaded, split: str) -> np.ndarray:
    """The prepared images of one split (training.pipeline.LoadedImages)."""
    return loaded.inputs[[index for index, row in enumerate(loaded.samples) if row.split == split]]


def split_rows(data: Path, split_file: Path | None, seed: int) -> list:
    """FracAtlas's images, each with its split: from the split file, else grouped and dealt here."""
    if split_file:
        rows = datasets.read_manifest(split_file, data)
        missing = [row.path for row in rows if not row.path.is_file()]
        if missing:
            raise datasets.DatasetError(f"{len(missing)} images of {split_file} are not in {data} (first: {missing[0]})")
        return rows
    from training.pipeline import load_images

    readable = load_images(datasets.discover(data, config.BINARY_TASK).samples, PreprocessSpec(size=32), progress=False)
    datasets.assign_groups(readable.samples, readable.hashes, copies=readable.copies())  # copies of one X-ray: one split
    datasets.split_groups(readable.samples, seed)
    return readable.samples


def build_card(args, spec, sizes, history, threshold, metrics, started) -> dict:
    now = datetime.now(timezone.utc)
    best = max(history, key=lambda row: row["val_accuracy"])
    return {
        "format_version": 1,
        "name": Path(config.MODEL_FILES[config.ORIENTATION_TASK]).stem,
        "version": now.strftime("%Y.%m.%d-%H%M"),
        "task": config.ORIENTATION_TASK,
        "classes": list(config.ORIENTATIONS),
        "architecture": architectures.CUSTOM_CNN,
        "preprocessing": spec.to_dict(),
        "weights_init": "none",
        "output": "logits; probabilities are their softmax",
        "calibration": {"method": "none"},
        "threshold": threshold,
        "threshold_rule": f"the lowest of {', '.join(map(str, THRESHOLDS))} at which at most {FALSE_TURN_LIMIT:.0%} of the upright "
                          "validation X-rays are taken for turned",
        "shipping_rule": f"at that threshold, at least {SHIPPING_FOUND_SHARE:.0%} of the turned validation X-rays set "
                         "upright (training/HISTORY.md, twenty-first session)",
        "data": {"source": "fracatlas", "folder": str(args.data), "attribution": config.DATA_ATTRIBUTION["fracatlas"],
                 "split_file": str(args.split) if args.split else "grouped and split by training.orientation",
                 "split_sizes": sizes,
                 "labels": "none needed: each X-ray turned 0-3 quarter turns, the turn is the label"},
        "training": {"epochs_requested": args.epochs, "best_epoch": best["epoch"], "batch_size": BATCH_SIZE,
                     "seconds": round(time.time() - started, 1), "hardware": hardware_description(),
                     "trained_at": now.isoformat(timespec="seconds"), "command": args.command, "seed": args.seed,
                     "augmentation": {**augment.description(), "then": "a random number of quarter turns"},
                     "history": history},
        "metrics": metrics,
        "intended_use": INTENDED_USE + " This model only says which way up an X-ray lies, so that the fracture "
                                       "models see it as they learnt X-rays.",
        "limitations": [f"Learnt from {sizes['train']} FracAtlas X-rays (hand, leg, hip, shoulder) as they were stored; "
                        "other body parts, or conventions of another hospital, may be taken for turned.",
                        "It tells quarter turns only: an X-ray tilted by less than 45° is read as upright."],
    }


def print_remeasured(args) -> int:
    from fracture_app.errors import FractureAppError
    from fracture_app.models import read_card

    try:
        card = read_card(args.measure)
        if args.redo_validation_choice:
            redone = redo_validation_choice(args.measure, args.data, args.split, args.command)
            print(f"threshold {card.data.get('threshold')} → {redone['threshold']}; the card now gives the figures below")
        figures = remeasure(args.measure, args.data, args.split)
    except (FractureAppError, datasets.DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (KeyError, ValueError, UnicodeDecodeError) as error:  # a --split file that is not a split manifest
        print(f"error: {args.split} is not a split file (path, label, split and group columns): {error}", file=sys.stderr)
        return 2
    print(f"{'split':<6}{'figure':<28}{'measured':>10}{'card':>10}")
    for split, measured in figures.items():
        stored = card.data.get("metrics", {}).get(split, {})
        for key in ("accuracy", "false_turn_share", "found_share"):
            print(f"{split:<6}{key:<28}{measured[key]:>10.4f}{stored.get(key, float('nan')):>10.4f}")
    return 0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.orientation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the FracAtlas folder")
    parser.add_argument("--split", type=Path,
                        help="the split file whose training rows it learns from, so that a fracture model trained on "
                             "it keeps unseen X-rays for both (the shipped one: models/fracture_binary_split.csv); "
                             "without it, the images are grouped and split here")
    parser.add_argument("--out", type=Path, help="folder to write orientation.keras and its card into")
    parser.add_argument("--measure", type=Path, metavar="MODEL",
                        help="instead of training, measure this orientation model again on --split and print its "
                             "figures beside its card's")
    parser.add_argument("--redo-validation-choice", action="store_true",
                        help="with --measure: choose the threshold again on --split's validation X-rays and write it, "
                             "with the validation and test figures at it, into the model's card")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--img-size", type=int, default=IMG_SIZE)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.img_size < 32:
        parser.error("--epochs must be at least 1 and --img-size at least 32")
    if (args.out is None) == (args.measure is None):
        parser.error("give --out to train, or --measure MODEL to measure a trained model again")
    if args.redo_validation_choice and not args.measure:
        parser.error("--redo-validation-choice goes with --measure MODEL")
    if args.measure and not args.split:
        parser.error("--measure needs the --split its model was measured on")
    if args.split and not args.split.is_file():
        parser.error(f"--split: no file {args.split}")
    args.command = command_line("training.orientation", argv)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    import_tensorflow_quietly()
    from training.pipeline import load_images

    if args.measure:
        return print_remeasured(args)
    started = time.time()
    spec = PreprocessSpec(size=args.img_size)
    try:
        loaded = load_images(split_rows(args.data, args.split, args.seed), spec, progress=False)
    except datasets.DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    inputs = {split: inputs_of(loaded, split) for split in SPLITS}
    sizes = {split: len(images) for split, images in inputs.items()}
    if not all(sizes.values()):
        print(f"error: too few X-rays to train and measure: {sizes}", file=sys.stderr)
        return 2
    log.info("X-rays by split: %s", sizes)
    model, history = train(inputs, spec, args.epochs, args.seed)
    threshold, metrics = measure(model, inputs)
    card = build_card(args, spec, sizes, history, threshold, metrics, started)
    write_atomically(model, card, {}, artifact_paths(args.out, config.ORIENTATION_TASK))
    if threshold is None:
        print(f"written, but no threshold keeps upright validation X-rays taken for turned within "
              f"{FALSE_TURN_LIMIT:.0%}: the card has none, so the app reads every picture as given")
        return 0
    val = metrics["val"]
    print(f"threshold {threshold}; validation: {val['upright_taken_for_turned']} of {val['upright']} upright taken for "
          f"turned, {val['turned_set_upright']} of {val['turned']} turned set upright "
          f"({'meets' if val['found_share'] >= SHIPPING_FOUND_SHARE else 'misses'} the shipping rule)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
