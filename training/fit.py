"""Fitting a built model: Adam, the --lr-schedule, the best epoch on validation, checkpoints that --resume
picks up, and two phases for a pretrained backbone. training.train reads the data and writes the results.
"""

import csv
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from fracture_app import config
from training import architectures, schedule
from training.validation_choices import VALIDATION_METRIC, validation_score

log = logging.getLogger("training")

LEARNING_RATE = 1e-3
FINE_TUNE_LEARNING_RATE = 1e-4
FROZEN_EPOCH_SHARE = 0.25  # with pretrained weights: this share of epochs trains the head alone
ELAPSED_FILE = "elapsed_seconds.txt"  # in the checkpoint folder, so --resume knows the time already spent
LABEL_SMOOTHING = 0.05
CHECKPOINT_FILE = "best.weights.h5"  # in the scratch folder: the best epoch's classifier weights
HISTORY_FILE = "history.csv"  # in the scratch folder: one row per finished epoch


def _targets(labels: np.ndarray, task: str, num_classes: int) -> np.ndarray:
    if task == config.BINARY_TASK:
        return labels.astype(np.float32)[:, None]
    return np.eye(num_classes, dtype=np.float32)[labels]


def fit(model, arrays, args, dataset, scratch: Path, strategy, started: float, masks=None):
    """Adam, best checkpoint on validation AUROC / macro-F1, the --lr-schedule; two phases if pretrained.

    With `masks`, the model's fracture map learns from the fracture boxes beside the answer
    (training.box_supervision); the checkpoint and the returned model are the classifier alone.
    """
    import keras

    num_classes = len(dataset.classes)
    monitor = f"val_{VALIDATION_METRIC[args.task][0]}"
    val_x, val_y = arrays["val"]
    with strategy.scope():  # a wrapper with the box loss is a new model: it must live where the weights do
        trained, losses, train_data, val_data, class_weight = _training_setup(model, arrays, args, num_classes, masks)
    checkpoint = scratch / CHECKPOINT_FILE

    class ValidationScore(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logits = model.predict(val_x, batch_size=args.batch_size, verbose=0)
            logs[monitor] = validation_score(args.task, val_y, np.asarray(logits, np.float32))

    class SaveBest(keras.callbacks.Callback):
        """The classifier's weights at its best validation score, whatever wrapper is being fitted."""

        def __init__(self, best):
            super().__init__()
            self.best = best

        def on_epoch_end(self, epoch, logs=None):
            score = logs.get(monitor, np.nan)
            if np.isfinite(score) and (args.keep_last_epoch or self.best is None or score > self.best):
                self.best = score
                model.save_weights(checkpoint)

    class StopAt(keras.callbacks.Callback):
        """Ends training after the epoch during which `deadline` (a time.time() value) passes."""

        def __init__(self, deadline: float):
            super().__init__()
            self.deadline = deadline

        def on_epoch_end(self, epoch, logs=None):
            if time.time() >= self.deadline:
                log.info("time limit reached after epoch %d: training stops here", epoch + 1)
                self.model.stop_training = True

    # A resumed run starts from the interrupted run's best weights and history, with a fresh optimizer.
    history = read_history(scratch / HISTORY_FILE)
    done = len(history.get("loss", []))
    if done:
        model.load_weights(checkpoint)
        log.info("resuming after %d epochs from %s", done, checkpoint)
    best_so_far = max((v for v in history.get(monitor, []) if np.isfinite(v)), default=None)
    plateau = schedule.plateau_callbacks(monitor) if args.lr_schedule == "plateau" else []
    callbacks = [
        ValidationScore(),
        SaveBest(best_so_far),
        *plateau,
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: _record_seconds(scratch, started)),
    ]
    deadline = started + 60 * args.time_limit if args.time_limit else None
    if deadline:
        callbacks.append(StopAt(deadline))
    backbone = architectures.find_backbone(model)
    pretrained = backbone is not None and architectures.trains_in_two_phases(args.arch, args.weights)
    learning_rate = args.learning_rate or LEARNING_RATE
    phases = [(args.epochs, learning_rate, None)]
    if pretrained:
        frozen = max(1, round(args.epochs * FROZEN_EPOCH_SHARE))
        phases = [(frozen, learning_rate, 0.0), (args.epochs, FINE_TUNE_LEARNING_RATE, args.fine_tune_share)]
    averaging = {"use_ema": True, "ema_momentum": args.weight_average} if args.weight_average else {}
    for (epochs, learning_rate, trainable_share), first_epoch in zip(phases, [0] + [end for end, *_ in phases]):
        if epochs <= done:
            continue
        if deadline and done and time.time() >= deadline:  # at least one epoch runs
            log.info("time limit reached: the phase from epoch %d (learning rate %g) is skipped", done + 1, learning_rate)
            break
        if trainable_share is not None:
            _set_trainable_top(backbone, trainable_share)
        with strategy.scope():
            trained.compile(optimizer=keras.optimizers.Adam(learning_rate, **averaging), **losses)
        # First, so that the validation score, the checkpoint and early stopping all see the averaged weights.
        swap = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if averaging else []
        cosine = ([schedule.cosine_decay(learning_rate, first_epoch, epochs, deadline)]
                  if args.lr_schedule == "cosine" else [])
        # Made anew for each phase: a logger that began a fresh file would empty it again when the next phase begins.
        log_epochs = keras.callbacks.CSVLogger(scratch / HISTORY_FILE, append=done > 0)
        result = trained.fit(train_data, validation_data=val_data, epochs=epochs, initial_epoch=done,
                             class_weight=class_weight, callbacks=swap + cosine + callbacks + [log_epochs],
                             shuffle=False,  # batches() shuffles
                             verbose=2 if args.quiet else 1)
        for key, values in result.history.items():
            history.setdefault(key, []).extend(float(v) for v in values)
        done = len(history.get("loss", []))
        if diverged(history):
            break
    scores = np.array(history[monitor], dtype=float)
    if not checkpoint.is_file() and (diverged(history) or not _finite_answers(model, val_x, args.batch_size)):
        remove_scratch(scratch)
        raise SystemExit(f"error: training diverged: the loss or the answers became NaN by epoch {done}, before any "
                         "epoch could be scored on validation; nothing was written. Try a lower --learning-rate, "
                         "or --float32 on a GPU.")
    if diverged(history):
        log.warning("the loss became NaN in epoch %d: training stopped there; the best epoch's weights are kept", done)
    if checkpoint.is_file():  # absent only when validation could never be scored (one class in it)
        model.load_weights(checkpoint)
    best_epoch = int(np.nanargmax(scores)) + 1 if np.isfinite(scores).any() and not args.keep_last_epoch else len(scores)
    return history, best_epoch


def diverged(history: dict[str, list[float]]) -> bool:
    return any(not np.isfinite(value) for value in history.get("loss", []))


def _finite_answers(model, inputs: np.ndarray, batch_size: int) -> bool:
    return bool(np.isfinite(np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0), np.float32)).all())


def _training_setup(model, arrays, args, num_classes: int, masks):
    """(model to fit, its loss arguments for compile, training batches, validation batches, class_weight for fit)."""
    import keras

    from training.pipeline import batches, class_weights

    (train_x, train_y), (val_x, val_y) = arrays["train"], arrays["val"]
    weights = class_weights(train_y, num_classes)
    if masks is None:
        train_data = batches(train_x, _targets(train_y, args.task, num_classes), args.batch_size, True, args.seed)
        val_data = batches(val_x, _targets(val_y, args.task, num_classes), args.batch_size, False)
        return model, {"loss": _loss(args.task)}, train_data, val_data, weights

    from training.box_supervision import batches_with_boxes, fracture_map_loss

    fracture_map = model.get_layer(architectures.FRACTURE_MAP).output
    trained = keras.Model(model.inputs, {architectures.LOGITS: model.output, architectures.FRACTURE_MAP: fracture_map})
    side = fracture_map.shape[1]
    train_data = batches_with_boxes(train_x, train_y, masks["train"], side, args.batch_size, True, args.seed, weights)
    val_data = batches_with_boxes(val_x, val_y, masks["val"], side, args.batch_size, False)
    losses = {"loss": {architectures.LOGITS: _loss(args.task), architectures.FRACTURE_MAP: fracture_map_loss},
              "loss_weights": {architectures.LOGITS: 1.0, architectures.FRACTURE_MAP: args.map_loss_weight}}
    return trained, losses, train_data, val_data, None


def earlier_seconds(scratch: Path) -> float:
    """Seconds an interrupted run had spent up to its last finished epoch (0 for a fresh run)."""
    path = scratch / ELAPSED_FILE
    return float(path.read_text()) if path.is_file() else 0.0


def _record_seconds(scratch: Path, started: float) -> None:
    (scratch / ELAPSED_FILE).write_text(f"{time.time() - started:.1f}")


def read_history(path: Path) -> dict[str, list[float]]:
    """The per-epoch log an (interrupted) run wrote: {metric: [value per epoch]}."""
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in (rows[0] if rows else {}) if key != "epoch"}


def _loss(task: str):
    import keras

    if task == config.BINARY_TASK:
        return keras.losses.BinaryCrossentropy(from_logits=True)
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=LABEL_SMOOTHING)


def _set_trainable_top(backbone, share: float) -> None:
    """Freeze all but the top `share` of the backbone's layers; batch norm stays frozen (small batches)."""
    import keras

    first_trainable = int(len(backbone.layers) * (1.0 - share))
    backbone.trainable = share > 0
    for index, layer in enumerate(backbone.layers):
        layer.trainable = index >= first_trainable and not isinstance(layer, keras.layers.BatchNormalization)


def remove_scratch(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
