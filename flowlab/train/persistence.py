"""What a run writes, and the rescue policy when a write fails.

:class:`RunWriter` owns the writes of one run folder (:mod:`.runfolder`): the checkpoints
(``last.pt`` with ``previous.pt`` kept, ``best.pt``), ``metrics.csv``, ``config.yaml``,
``split.json``, ``test.json`` and the sample images.  It is given the states to write and never
reads the trainer.

**The rescue policy.**  A write that fails with an ``OSError`` (a full disk, a folder made
read-only, a file-size limit; :func:`torch.save` reports some of these as ``RuntimeError``,
see :func:`~.checkpoint.as_os_error`) raises :class:`WriteFailed`.  The trainer answers with
:meth:`RunWriter.failure`, giving it the state of the run:

* before the first step (``started=False``): nothing is lost; the error says so and asks for
  another ``--run-dir``;
* after it: the state is written to the one fallback folder (:func:`~.runfolder.rescue`,
  which reads it back), and the error names that file and the command that continues from it;
  if the fallback fails too, it names the last readable checkpoint left in the run folder.

Either way the result is a :class:`~.runfolder.RunFolderError` (an ``OSError``: the command
line exits with 2) whose ``rescued`` attribute is the fallback checkpoint or ``None``.

Example:
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> run = Path(tempfile.mkdtemp()) / "run"
    >>> writer = RunWriter(run)
    >>> writer.prepare_folder(resume=False, overwrite=False)
    >>> writer.save_last({"model": {}, "step": 5}).name
    'last.pt'
    >>> writer.save_last({"model": {}, "step": 10}).name, (run / "previous.pt").is_file()
    ('last.pt', True)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from .checkpoint import as_os_error, load_checkpoint, readable_checkpoint, save_checkpoint
from .logger import MetricsLogger
from .runfolder import (
    RunFolder,
    RunFolderError,
    describe_os_error,
    folder_error,
    rescue,
)

__all__ = ["RunWriter", "WriteFailed"]


class WriteFailed(Exception):
    """A file of the run could not be written; :meth:`RunWriter.failure` turns it into the
    error the user sees, once it is given the state to rescue.

    Attributes:
        what: the file, as the message names it (``"last.pt"``, ``"samples/x.png"``).
        error: the ``OSError`` behind it.
    """

    def __init__(self, what: str, error: OSError) -> None:
        super().__init__(f"cannot write {what}: {error}")
        self.what = what
        self.error = error


class RunWriter:
    """The writes of one run (see the module docstring).

    Args:
        run_dir: the run folder; ``None`` writes nothing (checkpoints only where a path is
            given explicitly).
        is_main: this process writes (rank 0 of ``torchrun``); the others write nothing.
    """

    def __init__(self, run_dir: str | Path | None, is_main: bool = True) -> None:
        self.folder = RunFolder(run_dir) if run_dir is not None else None
        self.is_main = is_main
        self._logger: MetricsLogger | None = None

    @property
    def path(self) -> Path | None:
        return self.folder.path if self.folder is not None else None

    # ------------------------------------------------------------------ guarded writes
    def write(self, what: str, write: Callable[[], Any]) -> Any:
        """``write()``; an ``OSError`` (or torch's file-writer ``RuntimeError``) becomes
        :class:`WriteFailed` (a :class:`~.runfolder.RunFolderError` passes through)."""
        try:
            return write()
        except (OSError, RuntimeError) as caught:
            err = as_os_error(caught)  # torch.save reports a full disk as a RuntimeError
            if not isinstance(err, OSError) or isinstance(err, RunFolderError):
                raise
            raise WriteFailed(what, err) from caught

    def failure(self, failed: WriteFailed, state: dict[str, Any] | None, step: int,
                started: bool = True) -> RunFolderError:
        """The error for ``failed``, after saving ``state`` (the run at ``step``) to the
        fallback folder where training had ``started``."""
        reason = describe_os_error(failed.error)
        where = str(self.path)
        if not started:
            return _error(f"cannot write {failed.what} in the run folder {where!r}: {reason}. "
                          "Nothing was trained; choose another --run-dir.", failed.error, None)
        rescued, why = self._rescue(state)
        if rescued is not None:
            kept = (f"The state at step {step} was saved to {str(rescued)!r} instead "
                    "(read back: it loads): continue with 'flowlab train --run-dir DIR "
                    f"--resume-from {rescued}' once DIR can be written (or copy it to "
                    "DIR/last.pt).")
        else:
            last = self.folder.last if self.folder is not None else None
            last = last if last is not None and readable_checkpoint(last) else None
            kept = ("The state could not be saved anywhere else either"
                    + (f" ({why})" if why else "")
                    + (f"; the last checkpoint on disk is {str(last)!r} (step "
                       f"{int(load_checkpoint(last)['step'])})." if last else
                       "; no readable checkpoint is left."))
        return _error(f"cannot write {failed.what} in the run folder {where!r}: {reason}. "
                      f"Training stopped at step {step}. {kept}", failed.error, rescued)

    def _rescue(self, state: dict[str, Any] | None) -> tuple[Path | None, str | None]:
        """Save ``state`` to the fallback folder (read back); the path, or ``None`` and why."""
        if not self.is_main or state is None:
            return None, None
        try:
            return rescue(lambda p: save_checkpoint(state, p), "last.pt", load_checkpoint), None
        except Exception as err:  # noqa: BLE001 - reported in the message
            return None, str(err)

    # ------------------------------------------------------------------ the run's files
    def prepare_folder(self, resume: bool, overwrite: bool,
                       barrier: Callable[[], Any] | None = None) -> None:
        """A new run: check the folder (:meth:`~.runfolder.RunFolder.check_new`) and remove
        what ``overwrite`` allows; then check it can be written.  All processes call it, with
        the process group's ``barrier`` under ``torchrun`` (e.g. ``torch.distributed.barrier``)."""
        if self.folder is None:
            return
        if not resume:
            found = self.folder.check_new(overwrite)
            if barrier is not None:
                barrier()  # every rank has looked before rank 0 deletes
            if self.is_main:
                self.folder.remove(found)
        if self.is_main:
            self.folder.ensure_writable()

    def save_last(self, state: dict[str, Any]) -> Path | None:
        """``last.pt``, keeping the file it replaces as ``previous.pt``."""
        if not self.is_main or self.folder is None:
            return None
        folder = self.folder
        return self.write(folder.last.name, lambda: save_checkpoint(
            state, folder.last, keep_previous=folder.previous))

    def save_best(self, state: dict[str, Any]) -> Path | None:
        """``best.pt``: the best-on-validation weights with the run's state."""
        if not self.is_main or self.folder is None:
            return None
        path = self.folder.best
        return self.write(path.name, lambda: save_checkpoint(state, path))

    def write_settings(self, settings: dict[str, Any], split: Any | None) -> None:
        """``config.yaml`` (the settings) and ``split.json`` (the validation split)."""
        if not self.is_main or self.folder is None:
            return
        import yaml

        folder = self.folder
        self.write(folder.config.name, lambda: folder.config.write_text(yaml.safe_dump(settings)))
        if split is not None:
            self.write(folder.split.name, lambda: split.save(folder.split))

    def write_test(self, result: dict[str, Any]) -> None:
        """``test.json``: the test figures, written once at the end."""
        if not self.is_main or self.folder is None:
            return
        folder = self.folder
        self.write(folder.test.name, lambda: folder.test.write_text(json.dumps(result, indent=1)))

    def write_samples(self, save: Callable[[Any, Path], Any], samples: Any, step: int) -> None:
        """``samples/step_NNNNNNN.png`` through ``save(samples, path)``."""
        if not self.is_main or self.folder is None:
            return
        path = self.folder.samples / f"step_{step:07d}.png"
        self.write(f"samples/{path.name}", lambda: save(samples, path))

    def open_log(self, resume_step: int) -> None:
        """Start ``metrics.csv`` (keeping the rows up to ``resume_step``)."""
        if self.is_main and self._logger is None:
            path = self.path
            self._logger = self.write("metrics.csv", lambda: MetricsLogger(
                path, resume_step=resume_step))

    def log(self, row: dict[str, Any]) -> None:
        """One row of ``metrics.csv``."""
        if self._logger is not None:
            logger = self._logger
            self.write("metrics.csv", lambda: logger.log(row))

    def close_log(self) -> None:
        if self._logger is not None:
            self._logger.close()
            self._logger = None

    def saved_on_interrupt(self, state: dict[str, Any] | None,
                           step: int) -> tuple[Path | None, int | None]:
        """After Ctrl-C: write ``state`` (``None`` when the run is not in a state worth
        saving: a failed step, a second Ctrl-C) and return the checkpoint that holds the run
        and its step; a write that fails goes to the fallback and is reported on stderr."""
        if self.folder is None or not self.is_main:
            return None, None
        path: Path | None = None
        if state is not None:
            try:
                path = self.save_last(state)
            except WriteFailed as failed:
                import sys

                err = self.failure(failed, state, step)
                print(f"flowlab: {err}", file=sys.stderr)
                path = err.rescued
        elif self.folder.last.is_file():
            path = self.folder.last
        if path is None or not path.is_file():
            return None, None
        try:
            return path, int(load_checkpoint(path)["step"])
        except (ValueError, OSError):
            return None, None


def _error(message: str, cause: OSError, rescued: Path | None) -> RunFolderError:
    err = folder_error(message, cause)
    err.rescued = rescued  # type: ignore[attr-defined]
    return err
