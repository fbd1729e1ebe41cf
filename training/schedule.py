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


def cosine_rate(peak: float, progress: float) -> float:
    """The rate after `progress` (0 at the phase's start, 1 at its end) of the way down the half cosine."""
    progress = min(1.0, max(0.0, progress))
    return peak * (LOWEST_SHARE + (1 - LOWEST_SHARE) * 0.5 * (1 + math.cos(math.pi * progress)))


def cosine_decay(peak: float, first_epoch: int, end_epoch: int, deadline: float | None = None, clock=time.time):
    """A Keras callback that sets the rate at the start of each epoch from `first_epoch` (the phase's first) until
    `end_epoch`, by the share of the phase's epochs done or, with `deadline` (a clock() value), the share of its time
    spent, whichever is larger; it writes the rate into the epoch's logs."""
    import keras

    class CosineDecay(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.phase_started = clock()

        def progress(self, epoch: int) -> float:
            by_epochs = (epoch - first_epoch) / max(1, end_epoch - first_epoch)
            if deadline is None:
                return by_epochs
            span = deadline - self.phase_started
            by_time = (clock() - self.phase_started) / span if span > 0 else 1.0
            return max(by_epochs, by_time)

        def on_epoch_begin(self, epoch, logs=None):
            self.rate = cosine_rate(peak, self.progress(epoch))
            self.model.optimizer.learning_rate = self.rate

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["learning_rate"] = self.rate

    return CosineDecay()
