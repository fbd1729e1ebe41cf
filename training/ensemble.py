"""Several models trained alike, joined into one model file that averages them (either task).

    python -m training.ensemble --members runs/a/fracture_binary.keras runs/b/fracture_binary.keras --out runs/ab
    python -m training.evaluate --model runs/ab/fracture_binary.keras --data ../shared/data/fracatlas --redo-validation-choices

Models trained alike from different random starts disagree in where they put small, spurious hot spots
more than in where the fracture is, and in their mistakes more than in their right answers; averaging keeps
what they share. The joined model is flat (every member's layers renamed `m0_…`, `m1_…`), so Grad-CAM,
loading and the app treat it as any other model. Each member's own formula is applied to the averages:

- custom CNNs with a fracture map (the binary model):
  answer = mean(members' pooled-head logits) + max(mean(members' fracture maps)),
  so the heat map (Grad-CAM on `fracture_map`) is still exactly the evidence the answer took its maximum from;
- plain custom CNNs (the type model): their last feature maps side by side (`members_features`), pooled, and
  one dense layer holding every member's weights divided by their number, which is the mean of their logits;
  Grad-CAM on `members_features` (the last feature map, so the default) is then the mean of the members'
  Grad-CAMs before the ReLU.

Its calibration, threshold, mirror choice and Grad-CAM layer are then chosen on validation by
`training.evaluate --redo-validation-choices`, as for a trained model; the card written here carries only what
the members agree on, and who they are.
"""

import argparse
import shutil
import sys
from datetime import datetime
from pathlib import Path

from fracture_app import config
from fracture_app.errors import FractureAppError
from fracture_app.models import artifact_paths, member_curves_path
from training.architectures import CUSTOM_CNN, CUSTOM_CNN_MAP, FRACTURE_MAP, LOGITS, POOL
from training.card import MEMBERS_OWN_START, limitations

JOINABLE = (CUSTOM_CNN, CUSTOM_CNN_MAP)
MEMBER_PREFIX = "m{index}_"
MEMBERS_FEATURES = "members_features"
# Card fields that describe one member's training or measurement, not the joined file. Each member's training
# is summarised under training.members; the figures are measured again on the joined file.
PER_RUN_FIELDS = ("epochs_requested", "epochs_run", "best_epoch", "seconds", "hardware", "trained_at", "command",
                  "time_limit_minutes", "resumed_from_checkpoint")
MEMBER_ONLY_FIELDS = ("training", "metrics", "calibration", "threshold", "operating_points", "test_time_flip",
                      "gradcam", "compared_runs", "validation_choices_redone", "version", "sha256", "weights_init_sha256")


def renamed_copy(member, index: int, inputs):
    """The member's graph called on `inputs`, every layer a fresh copy named `m{index}_<name>` with its weights."""
    import keras

    prefix = MEMBER_PREFIX.format(index=index)

    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "name": prefix + layer.name})

    copy = keras.models.clone_model(member, input_tensors=inputs, clone_function=clone)
    for layer in member.layers:
        if layer.weights:
            copy.get_layer(prefix + layer.name).set_weights(layer.get_weights())
    return copy


def join(members: list):
    """One flat model that averages the members (see the module docstring)."""
    import keras

    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    shapes = {tuple(member.inputs[0].shape[1:]) for member in members}
    if len(shapes) != 1:
        raise ValueError(f"members take different inputs: {sorted(shapes)}")
    with_map = [_has_layers(member, LOGITS, FRACTURE_MAP) for member in members]
    if any(with_map) and not all(with_map):
        raise ValueError("members mix custom_cnn_map and other models: join models of one architecture")
    for member in members:
        if not _has_layers(member, POOL, LOGITS):
            raise ValueError(f"{member.name} is not one of {', '.join(JOINABLE)} (no {POOL!r} and {LOGITS!r})")
    inputs = keras.Input(shapes.pop(), name="xray")
    copies = [(renamed_copy(member, index, inputs), MEMBER_PREFIX.format(index=index))
              for index, member in enumerate(members)]
    answer = _mean_of_maps_and_heads(copies) if all(with_map) else _mean_of_pooled_heads(copies, members)
    architecture = CUSTOM_CNN_MAP if all(with_map) else CUSTOM_CNN
    return keras.Model(inputs, answer, name=f"{architecture}_ensemble")


def member_of(joined, index: int, spec, outputs: int):
    """Member `index` of a joined model as a model of its own, layer names and weights as it was trained, so that
    training can start from it (`--weights`), which a joined file cannot be (its layers are renamed)."""
    from training import architectures

    prefix = MEMBER_PREFIX.format(index=index)
    if not any(layer.name.startswith(prefix) for layer in joined.layers):
        raise ValueError(f"{joined.name} has no member {index}")
    if not _has_layers(joined, prefix + FRACTURE_MAP):
        raise ValueError("only a joined custom_cnn_map (the binary model) gives its members back: joined custom_cnn "
                         "models share one dense head, so a member's own head is not in the file")
    member = architectures.build(CUSTOM_CNN_MAP, spec, outputs)
    for layer in member.layers:
        if layer.weights:
            layer.set_weights(joined.get_layer(prefix + layer.name).get_weights())
    return member


def _has_layers(model, *names: str) -> bool:
    return set(names) <= {layer.name for layer in model.layers}


def _mean_of_maps_and_heads(copies):
    from keras import layers

    heads = [copy.get_layer(prefix + LOGITS).output for copy, prefix in copies]
    maps = [copy.get_layer(prefix + FRACTURE_MAP).output for copy, prefix in copies]
    head = layers.Average(dtype="float32", name="mean_logits")(heads)
    fracture_map = layers.Average(dtype="float32", name=FRACTURE_MAP)(maps)
    strongest = layers.GlobalMaxPooling2D(dtype="float32", name="map_max")(fracture_map)
    return layers.Add(dtype="float32", name="answer")([head, strongest])


def _mean_of_pooled_heads(copies, members):
    """mean_i(W_i · pool(F_i) + b_i) = [W_1 … W_n]/n · pool([F_1 … F_n]) + mean_i(b_i): one dense layer on the
    members' feature maps side by side, so Grad-CAM has one map that carries every member's evidence."""
    import numpy as np
    from keras import layers

    features = [copy.get_layer(prefix + POOL).input for copy, prefix in copies]
    side_by_side = layers.Concatenate(name=MEMBERS_FEATURES)(features)
    pooled = layers.GlobalAveragePooling2D(name=POOL)(side_by_side)
    heads = [member.get_layer(LOGITS).get_weights() for member in members]
    logits = layers.Dense(heads[0][1].shape[0], dtype="float32", name=LOGITS)
    answer = logits(pooled)
    logits.set_weights([np.concatenate([kernel for kernel, _ in heads]) / len(heads),
                        np.mean([bias for _, bias in heads], axis=0)])
    return answer


def member_summary(path: Path, card: dict) -> dict:
    training = card.get("training", {})
    return {"model": str(path), "sha256": card["sha256"], "version": card.get("version"),
            "weights_init": card.get("weights_init"), "weights_init_sha256": card.get("weights_init_sha256"),
            **{key: training.get(key) for key in ("command", "epochs_run", "best_epoch", "seconds", "hardware",
                                                   "trained_at")}}


def split_of(model_path: Path, task: str) -> dict[Path, str]:
    """Each image's split, from the split file beside a model."""
    from training.datasets import split_assignments

    manifest = artifact_paths(model_path.parent, task)["manifest"]
    if not manifest.is_file():
        raise FractureAppError(f"no split file beside {model_path} ({manifest.name})")
    return split_assignments(manifest)


def shared_training(cards) -> dict:
    """The training settings every member's card records alike (augmentation, schedule, box-loss weight, …);
    where members differ, only their own commands say how."""
    recorded = [card.get("training", {}) for card in cards]
    return {key: value for key, value in recorded[0].items()
            if key not in PER_RUN_FIELDS and all(other.get(key) == value for other in recorded[1:])}


def _start_kind(card: dict) -> str:
    """How a member started: from scratch, from ImageNet, or from an earlier model of ours (which one may differ,
    as a seed does; each member's start is recorded in its summary)."""
    start = card.get("weights_init")
    return start if start in ("none", "imagenet") else "an earlier model"


def joined_card(cards: list[tuple[Path, dict]], command: str) -> dict:
    """The joined model's card before its validation choices: what the members share, and each member's training."""
    first = cards[0][1]
    for path, card in cards:
        if card.get("architecture") not in JOINABLE:
            raise FractureAppError(f"{path} is a {card.get('architecture')} model; only {', '.join(JOINABLE)} models join")
        for field in ("task", "architecture", "classes", "preprocessing"):
            if card.get(field) != first.get(field):
                raise FractureAppError(f"{path} differs from {cards[0][0]} in {field}: members must be trained alike")
        if _start_kind(card) != _start_kind(first):
            raise FractureAppError(f"{path} differs from {cards[0][0]} in weights_init: members must be trained alike "
                                   "(from scratch, or each from an earlier model of ours)")
        if split_of(path, first["task"]) != split_of(cards[0][0], first["task"]):
            raise FractureAppError(f"{path} was trained on another split than {cards[0][0]}")
    members = [member_summary(path, card) for path, card in cards]
    hardware = sorted({member["hardware"] for member in members if member["hardware"]})
    seconds = [member["seconds"] for member in members]
    card = {key: value for key, value in first.items() if key not in MEMBER_ONLY_FIELDS}
    card["architecture"] = f"{first['architecture']}, mean of {len(members)}"
    starts = {(member["weights_init"], member["weights_init_sha256"]) for member in members}
    if len(starts) == 1:
        card["weights_init"], digest = starts.pop()
        card.update({"weights_init_sha256": digest} if digest else {})
    else:
        card["weights_init"] = MEMBERS_OWN_START
        card["limitations"] = [limitations(first["task"], MEMBERS_OWN_START, first["data"]["split_sizes"])[0],
                               *first["limitations"][1:]]
    card["training"] = {
        **shared_training(card for _, card in cards),
        "members": members,
        "epochs_run": sum(member["epochs_run"] or 0 for member in members),
        "seconds": sum(seconds) if None not in seconds else None,
        "hardware": "; ".join(hardware) or "unknown",
        "trained_at": max(member["trained_at"] or "" for member in members) or None,
        "command": command,
        "time_note": f"{len(members)} models trained separately, the epochs and time summed over them",
    }
    latest = card["training"]["trained_at"]
    # Like a trained model's version (the time its newest member finished), marked as a mean.
    stamp = datetime.fromisoformat(latest).strftime("%Y.%m.%d-%H%M") if latest else "unversioned"
    card["version"] = f"{stamp}-mean-of-{len(members)}"
    return card


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.ensemble", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--members", type=Path, nargs="+",
                      help=f"{' or '.join(JOINABLE)} model files of one task, each with its card and split file beside it")
    mode.add_argument("--member-of", type=Path, metavar="JOINED",
                      help="instead, read one member out of a joined model file, as a start for training (--weights)")
    parser.add_argument("--index", type=int, default=0, help="with --member-of: which member (0 is the first)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (a run folder; not models/)")
    args = parser.parse_args(argv)
    if args.member_of:
        return write_member(args.member_of, args.index, args.out)
    from fracture_app.models import load_model
    from training.card import command_line, write_atomically

    command = command_line("training.ensemble", argv)
    try:
        if args.out.resolve() == config.SHIPPED_MODELS_DIR.resolve():
            raise FractureAppError("--out must be a run folder, not models/: a joined model has no calibration or "
                                   "threshold until `training.evaluate --redo-validation-choices` gives it them")
        if len(args.members) < 2:
            raise FractureAppError("an ensemble needs at least two --members")
        loaded = [load_model(path) for path in args.members]  # checks each file against its card's sha256
        if any(member.task not in config.TASKS for member in loaded):
            raise FractureAppError("only fracture and fracture-type models are joined; the orientation model is one network")
        card = joined_card([(path, member.card.data) for path, member in zip(args.members, loaded)], command)
        model = join([member.keras_model for member in loaded])
    except (FractureAppError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    task = card["task"]
    paths = artifact_paths(args.out, task)
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact_paths(args.members[0].parent, task)["manifest"], paths["manifest"])
    for number, member in enumerate(args.members, start=1):
        curves = artifact_paths(member.parent, task)["curves"]
        if curves.is_file():
            shutil.copyfile(curves, member_curves_path(args.out, task, number))
    write_atomically(model, card, {}, paths)
    print(f"wrote {paths['model']} ({len(args.members)} members); next: python -m training.evaluate "
          f"--model {paths['model']} --data DATA --redo-validation-choices")
    return 0


def write_member(joined_path: Path, index: int, out: Path) -> int:
    """`member{index}.keras` in `out`: weights only, no card (it is a start for training, not a model to use)."""
    from fracture_app.models import load_model, sha256_of

    try:
        if out.resolve() == config.SHIPPED_MODELS_DIR.resolve():
            raise FractureAppError("--out must be a run folder, not models/")
        joined = load_model(joined_path)
        member = member_of(joined.keras_model, index, joined.spec, 1 if joined.task == config.BINARY_TASK else len(joined.classes))
    except (FractureAppError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"member{index}.keras"
    member.save(path)
    print(f"wrote {path} (sha256 {sha256_of(path)[:12]}…), member {index} of {joined_path}; start a run from it with "
          f"--weights {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
