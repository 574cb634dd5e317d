"""flowlab.train.interrupts on its own: one Ctrl-C is a flag, two stop at once."""

from __future__ import annotations

import signal
import threading

import pytest

from flowlab.train.interrupts import GracefulInterrupt, TrainingInterrupted


def test_the_first_ctrl_c_is_a_flag_the_second_stops_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with GracefulInterrupt() as stop:
        assert not stop.requested
        signal.raise_signal(signal.SIGINT)
        assert stop.requested and not stop.hard
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert stop.hard
    assert signal.getsignal(signal.SIGINT) is before
    with stop:  # entering again starts afresh
        assert not stop.requested and not stop.hard


def test_outside_the_main_thread_it_leaves_signals_alone():
    seen = []

    def run():
        with GracefulInterrupt() as stop:
            seen.append(stop.requested)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == [False]


def test_training_interrupted_is_a_keyboard_interrupt_with_the_saved_step():
    err = TrainingInterrupted(7, None, 5)
    assert isinstance(err, KeyboardInterrupt)
    assert (err.step, err.checkpoint, err.saved_step) == (7, None, 5)
