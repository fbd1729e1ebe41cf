"""The learning rate's course through a phase of training (--lr-schedule).

plateau (the default): halve the rate when validation stops improving, and stop early when it stays flat.
cosine: let the rate fall along a half cosine from its starting value to a hundredth of it over the phase's
epochs, or over the time left where --time-limit ends the phase sooner, with no early stopping. On a machine
lent for a fixed time this spends the whole time learning; halving on a noisy plateau can bring the rate
near zero long before the time is up.
"""

import math
import time

SCHEDULES = ("plateau", "cosine")
LOWEST_SHARE = 0.01  # the rate never reaches zero: an epoch at zero would learn nothing
PLATEAU_PATIENCE = 3  # epochs without a better validation score before the rate halves
EARLY_STOP_PATIENCE = 8  # … and before training stops


def cosine_rate(peak: float, progress: float) -> float:
    """The rate after `progress` (0 at the phase's start, 1 at its end) of the way down the half cosine."""
    progress = min(1.0, max(0.0, progress))
    return peak * (LOWEST_SHARE + (1 - LOWEST_SHARE) * 0.5 * (1 + math.cos(math.pi * progress)))


def plateau_callbacks(monitor: str) -> list:
    """Keras callbacks that halve the rate on a plateau of `monitor` (higher is better) and stop on a long one."""
    import keras

    return [keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=EARLY_STOP_PATIENCE),
            keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max", factor=0.5, patience=PLATEAU_PATIENCE,
                                              min_lr=1e-6)]


def cosine_decay(peak: float, first_epoch: int, end_epoch: int, deadline: float | None = None, clock=time.time):
    """A Keras callback that, at the start of each epoch of the phase from `first_epoch` to `end_epoch`, sets the
    rate by the share of the phase's epochs done or, with `deadline` (a clock() value), the share of its time spent,
    whichever is larger; like Keras' LearningRateScheduler, which it extends, it logs the rate the optimizer holds."""
    import keras

    class CosineByEpochsOrTime(keras.callbacks.LearningRateScheduler):
        def __init__(self):
            super().__init__(self.rate_at)

        def on_train_begin(self, logs=None):
            self.phase_started = clock()

        def rate_at(self, epoch: int, _current_rate: float) -> float:
            return cosine_rate(peak, self.progress(epoch))

        def progress(self, epoch: int) -> float:
            by_epochs = (epoch - first_epoch) / max(1, end_epoch - first_epoch)
            time_left = deadline - self.phase_started if deadline is not None else 0
            if time_left <= 0:  # no limit, or one already spent: the epoch the phase still runs learns at full rate
                return by_epochs
            return max(by_epochs, (clock() - self.phase_started) / time_left)

    return CosineByEpochsOrTime()
