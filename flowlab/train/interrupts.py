"""Ctrl-C during training: finish the step in progress, save, stop.

A training step that is cut in the middle leaves the optimiser, the EMA and the random
streams out of step with each other, so the first SIGINT only raises a flag
(:attr:`GracefulInterrupt.requested`); the loop reads it at the next step boundary, the run is
saved and :class:`TrainingInterrupted` is raised.  A second SIGINT means "stop now": it raises
:class:`KeyboardInterrupt` at once (mid-step) and marks the interrupt as :attr:`hard`, so
that the half-done step is *not* saved (the last checkpoint on disk stays the run's state).

Example:
    >>> import signal
    >>> with GracefulInterrupt() as stop:
    ...     signal.raise_signal(signal.SIGINT)   # a first Ctrl-C only sets the flag
    ...     stop.requested, stop.hard
    (True, False)
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

__all__ = ["GracefulInterrupt", "TrainingInterrupted"]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped :meth:`Trainer.fit <flowlab.train.Trainer.fit>` at a step
    boundary.

    Attributes:
        step: the last completed step.
        checkpoint: the checkpoint that holds the run (``None`` if there is none).
        saved_step: the step that checkpoint holds (``step``, unless a second Ctrl-C stopped
            the run in the middle of a step: then the last checkpoint written before).
    """

    def __init__(self, step: int, checkpoint: Path | None, saved_step: int | None = None) -> None:
        super().__init__(f"interrupted at step {step}")
        self.step = step
        self.checkpoint = checkpoint
        self.saved_step = saved_step


class GracefulInterrupt:
    """A context manager that turns the first SIGINT into a flag, a second into
    :class:`KeyboardInterrupt`; the previous handler is put back on exit.

    Outside the main thread (where Python cannot install signal handlers) it does nothing:
    Ctrl-C then behaves as usual.

    Attributes:
        requested: a Ctrl-C arrived (stop at the next step boundary).
        hard: a second Ctrl-C arrived and stopped the block in the middle.
    """

    def __init__(self) -> None:
        self.requested = False
        self.hard = False
        self._previous: Any = None
        self._installed = False

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now, mid-step
            self.hard = True
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> GracefulInterrupt:
        self.requested = self.hard = False
        self._installed = False
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handler)
                self._installed = True
            except ValueError:  # not the main interpreter
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
