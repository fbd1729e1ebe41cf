"""Train a fracture model on real X-rays and write it with its model card, plots and split manifest.

    python -m training.train --task binary --data ../shared/data/fracatlas
    python -m training.train --task type   --data ../shared/data/bone_break
"""

import argparse
import json
import logging
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from fracture_app import config
from fracture_app.data_layout import fracture_boxes, has_fracture_boxes
from fracture_app.models import artifact_paths, card_path_for, sha256_of
from fracture_app.preprocess import PreprocessSpec
from training import architectures, augment, datasets, schedule
from training.box_supervision import MAP_LOSS_WEIGHT
from training.card import (INTENDED_USE, LAST_EPOCH_KEPT, command_line, gpu_names, hardware_description, limitations,
                           target_report, write_atomically)
from training.fit import (CHECKPOINT_FILE, FINE_TUNE_LEARNING_RATE, HISTORY_FILE, LEARNING_RATE, earlier_seconds, fit,
                          remove_scratch)
from training.subgroups import image_flags, shortcut_limitations
from training.validation_choices import VALIDATION_METRIC, evaluate_splits

log = logging.getLogger("training")

FINE_TUNE_LAYER_SHARE = 0.30  # then the top 30% of the backbone's layers learn too (--fine-tune-share)
GRADCAM_LATER = "`python -m training.evaluate --model M --data D --redo-validation-choices`"


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Train the binary fracture model or the fracture-type model on a folder of X-rays. "
        "The data layout is recognised by itself: FracAtlas (images/Fractured, images/Non_fractured), "
        "Bone Break (<class>/Train, <class>/Test) or class folders, optionally inside train/val/test.",
        epilog="The defaults make a plain model; the shipped models' exact commands (architecture, size, schedule, "
               "starting weights) are in the README's Training section and in each model card.",
    )
    binary, fracture_type = config.BINARY_TASK, config.TYPE_TASK
    parser.add_argument("--task", choices=config.TASKS, required=True, help="binary: fractured or not; type: fracture type")
    parser.add_argument("--data", type=Path, required=True, help="folder holding the images")
    parser.add_argument("--arch", choices=architectures.ARCHITECTURES,
                        help=f"default: {config.DEFAULT_ARCHITECTURE[binary]} (binary), "
                             f"{config.DEFAULT_ARCHITECTURE[fracture_type]} (type)")
    parser.add_argument("--img-size", type=int,
                        help=f"square input side in pixels; default: {config.DEFAULT_IMG_SIZE[binary]} (binary), "
                             f"{config.DEFAULT_IMG_SIZE[fracture_type]} (type)")
    parser.add_argument("--epochs", type=int, default=30, help="most epochs; early stopping may end sooner (default 30)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per training step (default 32)")
    parser.add_argument("--learning-rate", type=float,
                        help=f"Adam's starting rate (default {LEARNING_RATE}; a pretrained backbone's second phase "
                             f"uses {FINE_TUNE_LEARNING_RATE})")
    parser.add_argument("--weights",
                        help="imagenet (downloads; falls back to random if offline), none, or a weights/.keras file; "
                             "a custom CNN starts from the layers it shares with an earlier .keras model "
                             "(default: imagenet for resnet50, densenet121 and mobilenetv2; none for the custom CNNs)")
    parser.add_argument("--out", type=Path, default=config.MODELS_DIR, help="output folder (default: models/)")
    parser.add_argument("--seed", type=int, default=42,
                        help="seeds the split where one is drawn, the weights' start, the augmentation and the "
                             "order of batches (default 42)")
    parser.add_argument("--resplit", action="store_true",
                        help="ignore split folders in the data and make grouped splits from all images")
    parser.add_argument("--split", type=Path, metavar="CSV",
                        help="take each image's split from this split file (e.g. a shipped model's "
                             "models/fracture_type_split.csv) instead of making one; every image must be in it")
    parser.add_argument("--resume", type=Path, metavar="DIR",
                        help="carry on from the checkpoint folder (<out>/.training-*) an interrupted run left, "
                             "with the same other arguments")
    parser.add_argument("--map-loss-weight", type=float, default=MAP_LOSS_WEIGHT,
                        help="custom_cnn_map only: weight of the fracture-box loss on the map beside the "
                             f"answer's (default {MAP_LOSS_WEIGHT})")
    parser.add_argument("--weight-average", type=float, default=0.0, metavar="MOMENTUM",
                        help="validate, checkpoint and ship an exponential moving average of the weights "
                             "(Polyak averaging) with this momentum per step, e.g. 0.99; 0 (default) for the raw weights")
    parser.add_argument("--fine-tune-share", type=float, default=FINE_TUNE_LAYER_SHARE, metavar="SHARE",
                        help="pretrained backbones only: the share of the backbone's layers, from the top, that learn "
                             f"after the head-only epochs (default {FINE_TUNE_LAYER_SHARE}; 1 for all; batch norm "
                             "stays frozen), e.g. 1 for a backbone pre-trained on X-rays rather than photographs")
    parser.add_argument("--lr-schedule", choices=schedule.SCHEDULES, default="plateau",
                        help="plateau (default): halve the learning rate when validation stops improving and stop "
                             "early when it stays flat; cosine: let it fall along a half cosine to a hundredth of its "
                             "start over --epochs (or over --time-limit, where that ends sooner), with no early "
                             "stopping; with a pretrained backbone, over each phase from that phase's own rate")
    parser.add_argument("--time-limit", type=float, metavar="MINUTES",
                        help="finish the epoch under way once this many minutes have passed since the run "
                             "started (reading the images included), then evaluate and write as usual, which "
                             "takes longer still (for a machine lent for a fixed time)")
    parser.add_argument("--keep-last-epoch", action="store_true",
                        help="keep the last epoch's weights, not the best on validation: for a fold run of "
                             "training.crossval, whose validation fold must choose nothing it then scores")
    parser.add_argument("--float32", action="store_true",
                        help="train in float32 on a GPU too (slower), e.g. where mixed precision's loss goes to NaN")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (logs only)")
    return parser


def with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """The settings left out that depend on others: the task's architecture and size, the architecture's start."""
    args.arch = args.arch or config.DEFAULT_ARCHITECTURE[args.task]
    args.img_size = args.img_size or config.DEFAULT_IMG_SIZE[args.task]
    args.weights = args.weights or ("imagenet" if args.arch in architectures.BACKBONES else "none")
    return args


def parse_args(argv=None) -> argparse.Namespace:
    parser = argument_parser()
    args = with_defaults(parser.parse_args(argv))
    if args.fine_tune_share != FINE_TUNE_LAYER_SHARE and not architectures.trains_in_two_phases(args.arch, args.weights):
        parser.error(f"--fine-tune-share applies to a pretrained backbone only ({', '.join(architectures.BACKBONES)} "
                     "with --weights other than none)")
    if args.weights not in ("imagenet", "none") and not Path(args.weights).is_file():
        parser.error(f"--weights: no such file {args.weights}")
    if args.split and not args.split.is_file():
        parser.error(f"--split: no such file {args.split}")
    if args.resume and not (args.resume / CHECKPOINT_FILE).is_file():
        parser.error(f"--resume: no checkpoint ({CHECKPOINT_FILE}) in {args.resume}")
    for holds, message in (  # written so that NaN fails each one
            (args.epochs >= 1, "--epochs must be at least 1"),
            (args.batch_size >= 1, "--batch-size must be at least 1"),
            (args.img_size >= 32, "--img-size must be at least 32"),
            (args.learning_rate is None or args.learning_rate > 0, "--learning-rate must be positive"),
            (args.map_loss_weight >= 0, "--map-loss-weight must not be negative"),
            (0 <= args.weight_average < 1, "--weight-average must be in [0, 1)"),
            (args.time_limit is None or args.time_limit > 0, "--time-limit must be positive"),
            (0 < args.fine_tune_share <= 1, "--fine-tune-share must be in (0, 1]")):
        if not holds:
            parser.error(message)
    if args.arch == architectures.CUSTOM_CNN_MAP and args.img_size % architectures.MAP_SIZE_MULTIPLE:
        # Checked here, not when the model is built: by then minutes of decoding would be lost.
        parser.error(f"--arch custom_cnn_map needs an --img-size that is a multiple of {architectures.MAP_SIZE_MULTIPLE}")
    args.command = command_line("training.train", argv)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        dataset = datasets.discover(args.data, args.task)
    except datasets.DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    train_model(args, dataset)
    return 0


def configure_hardware(full_precision: bool = False):
    """Mixed precision on a GPU unless `full_precision`; several TensorFlow GPUs through MirroredStrategy;
    else the default strategy. Returns (strategy, the dtype policy's name)."""
    import contextlib

    import keras

    gpus = gpu_names()
    log.info("training on %s (Keras on %s)", ", ".join(gpus) or "the CPU", keras.backend.backend())
    if keras.backend.backend() != "tensorflow":
        # bfloat16 needs no loss scaling; JAX uses the one GPU it finds without being told.
        if gpus and not full_precision:
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
        # No distribution strategy off TensorFlow: a stand-in whose scope() does nothing.
        return SimpleNamespace(scope=contextlib.nullcontext), keras.mixed_precision.global_policy().name
    import tensorflow as tf

    if gpus and not full_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    return strategy, keras.mixed_precision.global_policy().name


def train_model(args, dataset: datasets.Dataset) -> dict:
    import keras

    from training.pipeline import load_images, on_tensorflow

    keras.utils.set_random_seed(args.seed)
    started = time.time()
    spec = PreprocessSpec(size=args.img_size, channels=architectures.CHANNELS[args.arch])
    log.info("%s layout in %s: %d images, classes %s", dataset.layout, dataset.root, len(dataset.samples), dataset.classes)
    loaded = load_images(dataset.samples, spec, progress=not args.quiet)
    dataset.samples = loaded.samples
    datasets.assign_groups(loaded.samples, loaded.hashes, copies=loaded.copies())
    split_report = choose_split(args, dataset)
    log.info("split sizes %s (%d groups)", split_report["sizes"], split_report["groups"])
    arrays = {split: _split_arrays(loaded, split) for split in datasets.SPLITS}
    for split, (inputs, _) in arrays.items():
        if len(inputs) == 0:
            raise SystemExit(f"error: the {split} split is empty; the data set is too small to split")

    strategy, args.precision = configure_hardware(args.float32)
    paths = artifact_paths(args.out, args.task)
    scratch = args.resume or Path(tempfile.mkdtemp(prefix=".training-", dir=_ensure(args.out)))
    started -= earlier_seconds(scratch)  # a resumed run's card counts the interrupted run's time too
    args.weights = architectures.available_weights(args.arch, spec, args.weights)
    with strategy.scope():
        model = architectures.build(args.arch, spec, _outputs(args.task, dataset), args.weights)
    masks = fracture_masks(args, dataset, loaded, model)
    history, best_epoch = fit(model, arrays, args, dataset, scratch, strategy, started, masks)

    keras.mixed_precision.set_global_policy("float32")
    clean = architectures.build(args.arch, spec, _outputs(args.task, dataset), "none")  # no optimizer state
    clean.set_weights(model.get_weights())
    test_flags = image_flags([loaded.samples[i] for i in _split_indices(loaded, "test")], dataset.root)
    evaluation = evaluate_splits(clean, arrays, args.task, dataset.classes, test_flags)
    if args.task == config.BINARY_TASK and has_fracture_boxes(dataset.root):
        if on_tensorflow():
            from training.localisation import choose_and_score

            evaluation["gradcam"], evaluation["metrics"]["test"]["pointing_game"] = choose_and_score(
                clean, spec, dataset.root, loaded.samples, evaluation["test_time_flip"]["used"])
        else:
            log.warning("Grad-CAM runs on TensorFlow only: the card has no pointing game until %s measures it there",
                        GRADCAM_LATER)
            evaluation["gradcam"] = {"not_measured": f"Grad-CAM runs on TensorFlow only; {GRADCAM_LATER} measures it"}
    card = build_card(args, dataset, spec, split_report, loaded, evaluation, history, best_epoch, started)
    staged = write_plots_and_manifest(card, history, dataset, scratch, paths)
    write_atomically(clean, card, staged, paths)
    remove_scratch(scratch)
    log.info("wrote %s and its card; test metrics: %s", paths["model"], _headline(card))
    return card


def choose_split(args, dataset: datasets.Dataset) -> dict:
    """Give each sample its split: from --split, else from the start model's split file where it was trained
    for this task on this data, else grouped and dealt here. The report is split_groups' (with
    `split_file` where a file gave the split)."""
    inherited = stored_split_of(args.weights, args.task, dataset)
    if args.split and inherited and (datasets.split_assignments(args.split, dataset.root)
                                     != datasets.split_assignments(inherited, dataset.root)):
        raise SystemExit(f"error: --split {args.split} differs from {inherited}, the split of {args.weights}, which "
                         "was trained on these images: validation and test could hold images it trained on")
    stored = args.split or inherited
    if stored is None:
        report = datasets.split_groups(dataset.samples, args.seed, honour_given=not args.resplit)
        if report["groups_across_given_splits"]:
            log.warning("%d duplicate groups spanned the given split folders; each was kept whole in one split",
                        report["groups_across_given_splits"])
        return report
    log.info("taking the split from %s%s", stored,
             "" if args.split else f", the split of {args.weights}: its training images stay out of validation and test")
    try:
        report = datasets.keep_stored_split(dataset.samples, datasets.read_manifest(stored, dataset.root),
                                            refuse_spanning=not args.split)
    except datasets.DatasetError as error:
        raise SystemExit(f"error: {error}") from error
    if report["groups_spanning_split_file"]:
        log.warning("%d groups of near-identical images, as grouped here, span two splits of %s: kept as it says",
                    report["groups_spanning_split_file"], stored)
    return {**report, "split_file": stored}


def stored_split_of(weights: str, task: str, dataset: datasets.Dataset) -> Path | None:
    """The split file of the model a run starts from, where that model was trained for this task on this data."""
    card_path = card_path_for(Path(str(weights)))
    if Path(str(weights)).suffix != ".keras" or not card_path.is_file():
        return None
    card = json.loads(card_path.read_text(encoding="utf-8"))
    if card.get("task") != task or card.get("data", {}).get("source") != dataset.source:
        return None
    manifest = card_path.parent / card["data"].get("manifest", artifact_paths(card_path.parent, task)["manifest"].name)
    if not manifest.is_file():
        raise SystemExit(f"error: {weights} was trained on these images but its split file {manifest} is missing: "
                         "without it, validation and test could hold images it trained on")
    return manifest


def _ensure(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def fracture_masks(args, dataset, loaded, model) -> dict[str, np.ndarray] | None:
    """Per-split fracture-box masks, when the model has a fracture map and the data has FracAtlas boxes."""
    if architectures.FRACTURE_MAP not in {layer.name for layer in model.layers}:
        return None
    if args.task != config.BINARY_TASK:
        log.warning("fracture boxes mark fractures, not their types: the fracture map trains from the labels alone")
        return None
    if not has_fracture_boxes(dataset.root):
        log.warning("no fracture boxes in %s: the fracture map trains from the labels alone", dataset.root)
        return None
    from training.box_supervision import box_masks

    every = box_masks(dataset.root, loaded.samples, loaded.shapes, loaded.cut_short, args.img_size)
    left_out = sum(cut and bool(fracture_boxes(dataset.root, sample.path))
                   for sample, cut in zip(loaded.samples, loaded.cut_short))
    if left_out:
        log.warning("%d boxed images are truncated files, cut short by the reader: their boxes are left out", left_out)
    log.info("fracture boxes: %d images have at least one", int((every.reshape(len(every), -1).max(1) > 0).sum()))
    return {split: every[_split_indices(loaded, split)] for split in datasets.SPLITS}


def _outputs(task: str, dataset: datasets.Dataset) -> int:
    return 1 if task == config.BINARY_TASK else len(dataset.classes)


def _split_indices(loaded, split: str) -> list[int]:
    return [i for i, s in enumerate(loaded.samples) if s.split == split]


def _split_arrays(loaded, split: str):
    chosen = _split_indices(loaded, split)
    return loaded.inputs[chosen], np.array([loaded.samples[i].label for i in chosen], dtype=np.int64)


def build_card(args, dataset, spec, split_report, loaded, evaluation, history, best_epoch, started) -> dict:
    import keras

    now = datetime.now(timezone.utc)
    start_digest = _starting_file_digest(args.weights)
    card = {
        "format_version": 1,
        "name": Path(config.MODEL_FILES[args.task]).stem,
        "version": now.strftime("%Y.%m.%d-%H%M"),
        "task": args.task,
        "classes": list(dataset.classes),
        "architecture": args.arch,
        "preprocessing": spec.to_dict(),
        "weights_init": str(args.weights),
        **start_digest,
        "output": "logits; probabilities come from `calibration`",
        "data": {
            "source": dataset.source,
            "folder": str(dataset.root),
            "layout": dataset.layout,
            "attribution": config.DATA_ATTRIBUTION.get(dataset.source, "user-supplied data"),
            "images": len(loaded.samples),
            "unreadable": len(loaded.failures),
            "split_sizes": split_report["sizes"],
            "groups": split_report["groups"],
            "groups_across_given_splits": split_report["groups_across_given_splits"],
            **_split_file_fields(split_report, args.seed),
            "manifest": artifact_paths(args.out, args.task)["manifest"].name,
        },
        "training": {
            "epochs_requested": args.epochs,
            "epochs_run": len(history.get("loss", [])),
            "best_epoch": best_epoch,
            **({"kept": LAST_EPOCH_KEPT} if args.keep_last_epoch else {}),
            "batch_size": args.batch_size,
            "seconds": round(time.time() - started, 1),
            "hardware": hardware_description(),
            "trained_at": now.isoformat(timespec="seconds"),
            "command": args.command,
            "resumed_from_checkpoint": bool(args.resume),
            "augmentation": augment.description(),
            "lr_schedule": args.lr_schedule,
            **({"map_loss_weight": args.map_loss_weight} if args.arch == architectures.CUSTOM_CNN_MAP else {}),
            **({"weight_average_momentum": args.weight_average} if args.weight_average else {}),
            **({"fine_tune_layer_share": args.fine_tune_share}
               if architectures.trains_in_two_phases(args.arch, args.weights) else {}),
            **({"time_limit_minutes": args.time_limit} if args.time_limit else {}),
            "precision": args.precision,
            "keras_backend": keras.backend.backend(),
        },
        **evaluation,
        "intended_use": INTENDED_USE,
        "limitations": limitations(args.task, str(args.weights), split_report["sizes"],
                                   start_digest.get("weights_init_sha256"))
                       + (shortcut_limitations(dataset.root) if args.task == config.BINARY_TASK else []),
    }
    card["targets"] = target_report(card)
    return card


def _split_file_fields(split_report: dict, seed: int) -> dict:
    """Which file gave the split (then no seed did), and how many groups of copies span its splits."""
    if "split_file" not in split_report:
        return {"split_seed": seed}
    return {"split_seed": None,
            "split_file": {"path": str(split_report["split_file"]), "sha256": sha256_of(split_report["split_file"])},
            "groups_spanning_split_file": split_report["groups_spanning_split_file"]}


def _starting_file_digest(weights: str) -> dict:
    """The sha256 of the file a run started from: a path alone cannot say which version of it."""
    if weights in ("imagenet", "none", None):
        return {}
    return {"weights_init_sha256": sha256_of(Path(weights))}


def write_plots_and_manifest(card, history, dataset, scratch: Path, paths) -> dict[str, Path]:
    from training import plots

    staged = {"manifest": scratch / "manifest.csv", "history": scratch / HISTORY_FILE,
              "curves": scratch / "curves.png", "confusion": scratch / "confusion.png"}
    datasets.write_manifest(staged["manifest"], dataset)
    monitor = f"val_{VALIDATION_METRIC[card['task']][0]}"
    plots.training_curves(history, monitor, staged["curves"], f"{card['name']} ({card['architecture']})")
    if card["task"] == config.BINARY_TASK:
        staged["roc"] = scratch / "roc.png"
    plots.test_split_plots(card, staged)
    return staged


def _headline(card: dict) -> str:
    test = card["metrics"]["test"]
    keys = ("auroc", "sensitivity", "specificity", "ece") if card["task"] == config.BINARY_TASK else ("top1", "top3", "macro_f1")
    return ", ".join(f"{key} {test[key]:.3f}" for key in keys)


if __name__ == "__main__":
    sys.exit(main())
