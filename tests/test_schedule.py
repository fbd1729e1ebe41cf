"""--lr-schedule cosine: the rate falls along a half cosine by epochs, or by time where a deadline comes sooner."""

from types import SimpleNamespace

import pytest

from training.schedule import LOWEST_SHARE, cosine_decay, cosine_rate

PEAK = 1e-3


def test_the_rate_falls_from_its_peak_to_a_hundredth_of_it():
    assert cosine_rate(PEAK, 0) == pytest.approx(PEAK)
    assert cosine_rate(PEAK, 0.5) == pytest.approx(PEAK * (LOWEST_SHARE + (1 - LOWEST_SHARE) / 2))
    assert cosine_rate(PEAK, 1) == pytest.approx(PEAK * LOWEST_SHARE)
    assert cosine_rate(PEAK, 7) == cosine_rate(PEAK, 1) and cosine_rate(PEAK, -1) == cosine_rate(PEAK, 0)
    rates = [cosine_rate(PEAK, step / 10) for step in range(11)]
    assert all(later < earlier for earlier, later in zip(rates, rates[1:]))


def run_phase(callback, epochs):
    """The rates the callback logs for each of `epochs`: those it set in a real optimizer."""
    import keras

    callback.set_model(SimpleNamespace(optimizer=keras.optimizers.Adam(learning_rate=0.5)))
    callback.on_train_begin()
    rates = []
    for epoch in epochs:
        callback.on_epoch_begin(epoch)
        logs = {"loss": 1.0}
        callback.on_epoch_end(epoch, logs)
        rates.append(logs["learning_rate"])
    return rates


def test_a_phase_falls_over_its_own_epochs():
    clock = iter([0.0]).__next__  # read once, at the phase's start: no deadline, no other reading
    rates = run_phase(cosine_decay(PEAK, first_epoch=2, end_epoch=6, clock=clock), range(2, 6))
    assert rates == pytest.approx([cosine_rate(PEAK, share) for share in (0, 0.25, 0.5, 0.75)])


def test_a_deadline_that_comes_before_the_last_epoch_sets_the_pace():
    readings = iter([100.0, 100.0, 150.0, 190.0, 200.0])  # phase start, then each epoch's start
    callback = cosine_decay(PEAK, first_epoch=0, end_epoch=100, deadline=200.0, clock=readings.__next__)
    rates = run_phase(callback, range(4))
    assert rates == pytest.approx([cosine_rate(PEAK, share) for share in (0, 0.5, 0.9, 1.0)])


def test_epochs_set_the_pace_where_they_run_out_before_the_deadline():
    readings = iter([0.0, 0.0, 1.0])
    callback = cosine_decay(PEAK, first_epoch=0, end_epoch=2, deadline=1000.0, clock=readings.__next__)
    assert run_phase(callback, range(2)) == pytest.approx([PEAK, cosine_rate(PEAK, 0.5)])


def test_a_deadline_already_past_at_the_phase_start_leaves_the_pace_to_the_epochs():
    """Training runs a phase's first epoch even when the time limit went on reading the images: at full rate."""
    clock = iter([500.0]).__next__  # the phase starts after its deadline: no other reading
    callback = cosine_decay(PEAK, first_epoch=0, end_epoch=4, deadline=200.0, clock=clock)
    assert run_phase(callback, range(2)) == pytest.approx([PEAK, cosine_rate(PEAK, 0.25)])
