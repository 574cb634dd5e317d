r"""The training loop shared by the book, the command line and the benchmarks.

A flow is trained by maximum likelihood: each step draws a batch :math:`x_1, \dots, x_B` and
takes a gradient step on the mean negative log-likelihood

.. math::

    \mathcal{L}(\theta) = -\frac1B \sum_{b=1}^{B} \log p_\theta(x_b)
    = -\frac1B \sum_{b=1}^{B} \Big[\log p_Z\big(f_\theta(x_b)\big)
      + \log\big|\det Df_\theta(x_b)\big|\Big].

:class:`Trainer` is that loop: AdamW with linear warm-up and cosine decay (:mod:`.schedule`),
gradient clipping and the finiteness guard (:mod:`.health`), an optional EMA of the weights
(:mod:`.ema`), optional bfloat16 autocast and ``torch.compile``, several processes through
``torchrun`` (:mod:`.distributed`), and a per-step hook (:mod:`.callbacks`).  Everything
around the loop is a small object it owns and feeds -- each is given the state it needs and
never reads the trainer:

=====================  ==================================================================
:mod:`.batching`       which batches each step of each process reads (:class:`Batches`)
:mod:`.selection`      **honest model selection**: the best-on-validation weights, patience
:mod:`.persistence`    the run folder's files and the rescue policy of a failed write
:mod:`.interrupts`     Ctrl-C at a step boundary (:class:`TrainingInterrupted`)
:mod:`.split`          the validation split carved from the training data
:mod:`.logger`         ``metrics.csv`` rows and their running means
=====================  ==================================================================

A validation split is scored every ``eval_every`` steps, the best-on-validation weights are
kept (``best.pt``), ``patience`` stops early, and the test set is evaluated exactly once, at
the end, on the selected weights (never during training).

Example:
    >>> from flowlab.data.toy2d import toy_dataset
    >>> from flowlab.models import realnvp
    >>> x_train = toy_dataset("two_moons", 1000, seed=0)
    >>> x_test = toy_dataset("two_moons", 500, seed=1)
    >>> trainer = Trainer(realnvp(2, couplings=2), x_train, x_test,
    ...                   TrainConfig(steps=20, eval_every=10, progress=False, sample_every=0))
    >>> history = trainer.fit()      # logged rows: training, validation, one test row
    >>> [r["step"] for r in history if "val_nll" in r], trainer.best_step in (10, 20)
    ([10, 20], True)
    >>> sorted(trainer.test_result)[:3]  # evaluated once, at the end, on the best weights
    ['best_val_bits_per_dim', 'bits_per_dim', 'nll']
"""

from __future__ import annotations

import contextlib
import inspect
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from .batching import Batches, as_args, check_finite_data, training_contexts
from .callbacks import StepCallback, StepRecord
from .checkpoint import save_checkpoint
from .config import TrainConfig
from .distributed import DistInfo, setup
from .ema import make_ema
from .evaluate import evaluate_nll, first_tensor, nll_to_bits_per_dim
from .health import TrainingDiverged, divergence_message, gradient_norm
from .interrupts import GracefulInterrupt, TrainingInterrupted
from .logger import StepWindow
from .loss import NegativeLogLikelihood, checks_disabled
from .persistence import RunWriter, WriteFailed
from .rng import (
    gather_rng_states,
    isolated_rng,
    restore_rng_states,
    rng_state,
    seed_everything,
)
from .runfolder import RunDirExistsError, RunFolderError, resume_checkpoint
from .samples import save_samples
from .schedule import check_resume_settings, restore_schedule, warmup_cosine
from .selection import ModelSelection, load_best_file
from .split import ValidationSplit

__all__ = [
    "Trainer", "NegativeLogLikelihood", "TrainingDiverged", "TrainingInterrupted",
    "RunDirExistsError", "RunFolderError", "StepRecord",
]  # fmt: skip

FORMAT = "flowlab-checkpoint/2"


class Trainer:
    """Maximum-likelihood training of ``model`` on ``train_data``, selected on validation.

    Args:
        model: anything with ``log_prob(x) -> (batch,)``; sampling needs ``sample(n)`` too.
            A conditional model (``model.conditional`` is true, e.g. a
            :class:`~flowlab.flow.Flow` with conditional layers) is trained on
            :math:`\\log p(x \\mid c)`: ``log_prob(x, c)`` and ``sample(n, context=c)``.
        train_data: a tensor of shape ``(N, *event_shape)`` (fastest) or a
            :class:`~torch.utils.data.Dataset` yielding tensors or ``(tensor, label)`` pairs;
            for a conditional model, ``(x, c)`` pairs (a
            :class:`~torch.utils.data.TensorDataset` ``(x, c)`` is as fast as a tensor), whose
            second item is then the context, not a label.
            Unless ``val_data`` is given, ``config.val_fraction`` of it is held out for
            validation (seeded, stratified by ``labels``).
        test_data: the same kinds; evaluated once, at the end of training, on the selected
            weights (optional).
        config: a :class:`TrainConfig`; keyword ``overrides`` replace its fields (a setting
            that is not the loop's, e.g. ``data=``, raises ``TypeError``).
        val_data: an explicit validation set instead of the carved one.
        labels: class labels of ``train_data`` for a stratified split (default: its
            ``targets``/``labels`` attribute, if any).
        bits_per_dim: maps a mean NLL in nats to bits/dim; default
            :math:`\\mathrm{NLL}/(D\\ln 2)` (:func:`flowlab.metrics.bits_per_dim`).
        save_samples_fn: ``fn(samples, path)`` writing a PNG; default draws 2-D scatter plots
            and image grids (:func:`flowlab.train.samples.save_samples`).
        metadata: a YAML-able mapping stored in every checkpoint and in ``config.yaml``
            (the command line stores its recipe there, for :func:`flowlab.train.load_run`).
        callbacks: per-step hooks, each called with a
            :class:`~flowlab.train.callbacks.StepRecord` after every optimisation step (see
            :meth:`on_step`).

    Under ``torchrun`` every process builds the same trainer; the global ``batch_size`` is
    split evenly between them, and only rank 0 writes files or shows progress.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Tensor | Dataset,
        test_data: Tensor | Dataset | None = None,
        config: TrainConfig | None = None,
        *,
        val_data: Tensor | Dataset | None = None,
        labels: Tensor | None = None,
        bits_per_dim: Callable[[float], float] | None = None,
        save_samples_fn: Callable[[Tensor, Path], Any] | None = None,
        metadata: dict[str, Any] | None = None,
        callbacks: Iterable[StepCallback] = (),
        **overrides: Any,
    ) -> None:
        self.config = cfg = (config or TrainConfig()).updated(overrides)
        for name, data in (("training", train_data), ("test", test_data), ("validation", val_data)):
            if data is not None and len(data) == 0:
                raise ValueError(f"the {name} data is empty (0 samples): pass at least one batch")
        self.info: DistInfo = setup(cfg.device)
        if cfg.batch_size % self.info.world_size:
            raise ValueError(
                f"batch_size {cfg.batch_size} must be divisible by the number of processes "
                f"({self.info.world_size}): it is the global batch, split evenly between them"
            )
        self.device = self.info.device
        self.model = model.to(self.device)
        self.loss_module = NegativeLogLikelihood(self.model)
        #: Whether the batches are (x, context) pairs: the model reads a context.
        self.conditional = bool(getattr(model, "conditional", False))
        ref = next((p for p in self.model.parameters() if p.is_floating_point()), None)
        if ref is None:
            raise ValueError("the model has no floating-point parameters to train")
        self.dtype = ref.dtype
        self.writer = RunWriter(cfg.run_dir, self.info.is_main)
        self.folder = self.writer.folder
        self.run_dir = self.writer.path
        self.metadata = dict(metadata or {})

        # The validation split: carved from the training data (or given), recorded on disk.
        self.full_train_data = train_data
        self.split: ValidationSplit | None = None
        if val_data is None and cfg.val_fraction > 0:
            recorded = self.folder.split if self.folder and cfg.resume else None
            self.split = ValidationSplit.for_run(train_data, cfg.val_fraction, cfg.seed, labels,
                                                 recorded)
            train_data, val_data = self.split.apply(train_data)
        self.train_data = train_data
        self.val_data = val_data
        self.test_data = test_data
        self._bpd = bits_per_dim
        self._save_samples = save_samples_fn or (lambda x, path: save_samples(x, path))

        self.batches = Batches(
            train_data, cfg.batch_size, cfg.seed, world_size=self.info.world_size,
            rank=self.info.rank, device=self.device, dtype=self.dtype,
            conditional=self.conditional, num_workers=cfg.num_workers,
            model_name=type(self.model).__name__,
            held_out=len(val_data) if self.split is not None else None,
        )
        self.local_batch = self.batches.local_batch
        self.sampler = self.batches.sampler
        self.steps_per_epoch = self.batches.steps_per_epoch

        self._params = [p for p in self.model.parameters() if p.requires_grad]
        # The fused AdamW kernel (one pass over all parameters instead of ~10 small ops per
        # tensor) where PyTorch has it (CPU, CUDA); the result is the same algorithm.
        self.optimizer = torch.optim.AdamW(
            self._params, lr=cfg.lr, weight_decay=cfg.weight_decay,
            fused=True if self._params and self.device.type in ("cpu", "cuda") else None,
        )
        self.scheduler = warmup_cosine(
            self.optimizer, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio
        )
        self.ema = make_ema(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.selection = ModelSelection(cfg.patience, has_ema=self.ema is not None)
        self.step = 0
        self.bad_steps = 0
        self.test_result: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self._callbacks: list[StepCallback] = list(callbacks)
        self._interrupt = GracefulInterrupt()
        self._prepared = False

    # ------------------------------------------------------------------ model selection
    # read-only views of :attr:`selection`, the names the CLI and older code read
    best_score = property(lambda self: self.selection.best_score,
                          doc="The best validation bits/dim so far (``inf`` before one).")
    best_step = property(lambda self: self.selection.best_step,
                         doc="The step of :attr:`best_score` (``None`` before one).")
    selected_weights = property(lambda self: self.selection.selected_weights,
                                doc='Which weights scored best: "model", "ema" or "raw".')
    evals_since_best = property(lambda self: self.selection.evals_since_best,
                                doc="Validations since the last improvement (patience).")
    stopped_early = property(lambda self: self.selection.stopped_early,
                             doc="Whether patience stopped the run.")

    # ------------------------------------------------------------------ the public verbs
    def on_step(self, fn: StepCallback) -> StepCallback:
        """Call ``fn(record)`` after every optimisation step; returns ``fn`` (so it also
        works as a decorator).  ``record`` is a read-only
        :class:`~flowlab.train.callbacks.StepRecord` (step, epoch, loss, grad_norm, lr,
        finite, batch_size); see :mod:`flowlab.train.callbacks` for an example."""
        if not callable(fn):
            raise TypeError(f"on_step needs a callable taking a StepRecord, got {fn!r}")
        self._callbacks.append(fn)
        return fn

    def fit(self, stop_at: int | None = None) -> list[dict[str, Any]]:
        """Train until ``config.steps`` (or early stopping, or step ``stop_at``, leaving a
        checkpoint to resume from); returns the logged rows (also in ``metrics.csv``).

        When training ends (not at ``stop_at``), the model is left holding the
        best-on-validation weights (the EMA's, if any) and the test set, if given, is
        evaluated once on them (:attr:`test_result`, ``test.json``).

        Raises:
            TrainingInterrupted: Ctrl-C; the step in progress is finished and saved first.
            TrainingDiverged: ``max_bad_steps`` non-finite steps in a row.
            RunFolderError: a run file could not be written (e.g. a full disk); the state
                was saved to a fallback folder first and the message says where.
        """
        cfg = self.config
        if not self._prepared:
            self.prepare()
        end = cfg.steps if stop_at is None else min(int(stop_at), cfg.steps)
        if self.step < end and not self.stopped_early:
            self.selection.release(self.model, self.ema)  # continue from the last, not the best
        with self._guard():
            self.writer.open_log(self.step)
        bar = self._progress_bar(end)
        self._postfix: dict[str, str] = {}
        window = StepWindow()
        interrupt = self._interrupt
        callbacks = self._callbacks
        world = self.info.world_size
        try:
            with checks_disabled(self.model), interrupt:
                while self.step < end and not self.stopped_early:
                    epoch, first = self.batches.position(self.step)
                    for x in self.batches.epoch(epoch, first):
                        lr = self.optimizer.param_groups[0]["lr"]
                        loss, gnorm, ok = self._train_step(x)
                        n = first_tensor(x).shape[0] * world
                        window.add(loss, gnorm, ok, n)
                        if callbacks:
                            record = StepRecord(self.step, epoch, loss, gnorm, lr, ok, n)
                            for fn in callbacks:
                                fn(record)
                        bar.update(1)
                        self._after_step(end, epoch, lr, window, bar)
                        if interrupt.requested:
                            raise KeyboardInterrupt
                        if self.step >= end or self.stopped_early:
                            break
                if self.step >= cfg.steps or self.stopped_early:
                    self._finish()
        except KeyboardInterrupt:
            healthy = (self._prepared and self.bad_steps == 0 and self.step > 0
                       and not interrupt.hard)
            # Only this process saves (the others may be interrupted at another point): no
            # collective call, so its random state alone is kept.
            state = (self.state_dict(gather=not self.info.distributed)
                     if healthy and self.info.is_main and self.folder is not None else None)
            path, saved = self.writer.saved_on_interrupt(state, self.step)
            raise TrainingInterrupted(self.step, path, saved) from None
        finally:
            bar.close()
            self.writer.close_log()
        return self.history

    def evaluate(
        self, data: Tensor | Dataset | None = None, use_ema: bool = True
    ) -> dict[str, float]:
        """Mean NLL (nats per sample) and bits/dim of the current weights on ``data``
        (default: the test set -- call it after training, not to choose a model).

        Uses the EMA weights when there are some and ``use_ema``; all processes must call it
        together.  Randomness inside the model (e.g. dequantization noise) is drawn from a
        fixed seed and does not disturb the training's random state.
        """
        data = self.test_data if data is None else data
        if data is None:
            raise ValueError("no test data: pass test_data to the Trainer or data to evaluate()")
        with isolated_rng(self.config.seed, self.device):
            return evaluate_nll(
                self.eval_model if use_ema else self.model, data,
                batch_size=self.config.eval_batch_size, device=self.device, dtype=self.dtype,
                bits_per_dim=self._bits_per_dim_fn(data), info=self.info,
            )

    @property
    def eval_model(self) -> nn.Module:
        """The model used for evaluation and sampling: the EMA copy if there is one."""
        return self.ema.module if self.ema is not None else self.model

    def sample(
        self, n: int, temperature: float = 1.0, seed: int | None = None,
        context: Tensor | None = None,
    ) -> Tensor:
        """``n`` samples of the (EMA) model; with ``seed`` the same noise every call.

        A conditional model samples at ``context`` (one per sample or one for all); by
        default at the contexts of the first ``n`` training samples (cycled)."""
        model = self.eval_model
        was_training = model.training
        model.eval()
        ctx = isolated_rng(seed, self.device) if seed is not None else contextlib.nullcontext()
        kwargs: dict[str, Any] = {}
        if temperature != 1.0 or _accepts(model.sample, "temperature"):
            kwargs["temperature"] = temperature
        if context is None and self.conditional:
            context = training_contexts(self.full_train_data, n)
        if context is not None:
            kwargs["context"] = context.to(device=self.device, dtype=self.dtype)
        try:
            with ctx, torch.no_grad():
                return model.sample(n, **kwargs)
        finally:
            model.train(was_training)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(
        self, gather: bool = True, weights: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Everything needed to continue this run exactly (see :meth:`load_state_dict`).

        ``gather=False`` keeps only this process's random state (no collective call);
        ``weights`` (``{"model": ..., "ema": ...}``) replaces the live weights."""
        weights = weights or self.selection.held or {
            "model": self.model.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
        }
        return {
            "format": FORMAT,
            "step": self.step,
            "bad_steps": self.bad_steps,
            "model": weights["model"],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": weights["ema"],
            "rng": gather_rng_states(self.info.world_size) if gather else [rng_state()],
            "world_size": self.info.world_size,
            "config": self.config.to_dict(),
            "selection": self.selection.state_dict(),
            "split": None if self.split is None else self.split.to_dict(),
            "test": self.test_result,
            "metadata": self.metadata,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the run saved in ``state`` (a checkpoint of :meth:`state_dict`)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler, changed = restore_schedule(
            self.scheduler, state["scheduler"], int(state["step"]), self.config.steps)
        if changed and self.info.is_main:
            warnings.warn(changed, UserWarning, stacklevel=2)
        if self.ema is not None:
            if state.get("ema") is None:
                warnings.warn("the checkpoint has no EMA weights; the EMA restarts from the model")
                self.ema = make_ema(self.model, self.config.ema_decay)
            else:
                self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        self.bad_steps = int(state.get("bad_steps", 0))
        self.selection.load_state_dict(state.get("selection"))
        self.test_result = state.get("test")
        if state.get("split") and self.split is not None:
            if ValidationSplit.from_dict(state["split"]) != self.split:
                raise ValueError(
                    "the checkpoint's validation split differs from this run's (split.json, "
                    "seed, val_fraction or data changed): resume with the run's own settings"
                )
        unmatched = restore_rng_states(state.get("rng") or [], self.info.rank,
                                       self.info.world_size,
                                       self.config.seed + 7919 * self.step + self.info.rank)
        if unmatched:
            warnings.warn(unmatched)

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Write the checkpoint atomically (rank 0 only; all ranks must call it).

        Without ``path`` it goes to ``<run_dir>/last.pt``, and the checkpoint it replaces is
        kept as ``previous.pt``.
        """
        state = self.state_dict()  # collective: gathers every rank's random state
        if not self.info.is_main:
            return None
        if path is not None:
            return save_checkpoint(state, path)
        with self._guard(state):
            return self.writer.save_last(state)

    # ------------------------------------------------------------------ setting up
    def prepare(self) -> None:
        """Check the run folder, resume, initialise data-dependent layers, wrap the model for
        DDP and ``torch.compile``.  :meth:`fit` calls it; call it first to catch setup errors
        (an existing or unwritable run folder, a missing checkpoint, changed optimisation
        settings on resume) before any training."""
        if self._prepared:
            return
        cfg = self.config
        checkpoint = None
        if cfg.resume:
            _, checkpoint = resume_checkpoint(cfg.run_dir, cfg.resume_from, self.device)
            check_resume_settings(checkpoint.get("config"), cfg)
        self.writer.prepare_folder(
            cfg.resume, cfg.overwrite, barrier=dist.barrier if self.info.distributed else None)
        self._barrier()
        seed_everything(cfg.seed + self.info.rank)
        # The full training data (so a bad sample's index is the caller's), an explicit
        # validation set, the test set.
        explicit_val = self.val_data if self.split is None else None
        for name, data in (("training", self.full_train_data), ("validation", explicit_val),
                           ("test", self.test_data)):
            if data is not None:
                check_finite_data(data, name)

        # One gradient-free forward pass initialises data-dependent layers (ActNorm); DDP then
        # copies rank 0's parameters and buffers to every process.  On resume the checkpoint
        # overwrites whatever it set.
        with isolated_rng(cfg.seed, self.device), torch.no_grad():
            self.loss_module(*as_args(next(self.batches.epoch(0, 0))))
        if self.ema is not None:
            self.ema = make_ema(self.model, cfg.ema_decay)
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
        net: nn.Module = self.loss_module
        if self.info.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            net = DistributedDataParallel(net, device_ids=device_ids)
        if cfg.compile:
            net = torch.compile(net)
        self._net = net
        with self._guard():
            self.writer.write_settings({**self.metadata.get("recipe", {}), **cfg.to_dict()},
                                       self.split)
        self._barrier()
        self._start_time = time.perf_counter()
        self._prepared = True

    # ------------------------------------------------------------------ the loop
    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _train_step(self, x: Tensor | tuple[Tensor, Tensor]) -> tuple[float, float, bool]:
        """One optimisation step; returns the (global mean) loss, the gradient norm and
        whether the step was taken (the norm is the gradient check, :mod:`.health`).

        Private: to watch the steps, use the public per-step hook (:meth:`on_step`)."""
        cfg = self.config
        if not self.model.training:
            self.model.train()
        with self._autocast():
            nll = self._net(*as_args(x))
        loss = nll.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        health = gradient_norm(self._params, cfg.grad_clip)
        # One synchronisation per step: the loss (averaged over processes) and the gradient
        # norm (identical on all processes after DDP's all-reduce) decide whether to step.
        stats = torch.stack([loss.detach().float(), health.detach().float().to(loss.device)])
        if self.info.distributed:
            dist.all_reduce(stats)
            stats /= self.info.world_size
        loss_value, gnorm_value = stats.tolist()
        ok = math.isfinite(loss_value) and math.isfinite(gnorm_value)
        if ok:
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.bad_steps = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.bad_steps += 1
        self.scheduler.step()
        self.step += 1
        if not ok:
            if self.info.is_main:
                warnings.warn(
                    f"step {self.step}: non-finite loss ({loss_value}) or gradients "
                    f"(norm {gnorm_value}); the step was skipped ({self.bad_steps} in a row)",
                    RuntimeWarning, stacklevel=2,
                )
            if self.bad_steps >= cfg.max_bad_steps:
                raise TrainingDiverged(divergence_message(
                    self.step, self.bad_steps, loss_value, lr=cfg.lr, grad_clip=cfg.grad_clip,
                    batch=first_tensor(x), checkpoint=self.folder.last if self.folder else None,
                ))
        return loss_value, gnorm_value, ok

    def _after_step(self, end: int, epoch: int, lr: float, window: StepWindow, bar: Any) -> None:
        cfg, s = self.config, self.step
        last = s == end
        if s % cfg.log_every == 0 or last:
            row = {
                "step": s, "epoch": epoch, "lr": lr,
                "loss": window.mean_loss(), "grad_norm": window.mean_gnorm(),
                "samples_per_s": window.samples_per_s(),
                "skipped": window.skipped, "time_s": time.perf_counter() - self._start_time,
            }
            row["bits_per_dim"] = self._bits_per_dim_fn(self.train_data)(row["loss"])
            self._record(row)
            self._postfix.update(loss=f"{row['loss']:.3f}", bpd=f"{row['bits_per_dim']:.3f}",
                                 samples_s=f"{row['samples_per_s']:.0f}")
            bar.set_postfix(self._postfix, refresh=False)
            window.reset()
        if self.val_data is not None and (s % cfg.eval_every == 0 or s == cfg.steps):
            self._validate(epoch)
            self._postfix.update(val_bpd=f"{self.selection.last_score:.3f}",
                                 best=f"{self.best_score:.3f}")
            bar.set_postfix(self._postfix, refresh=False)
        if cfg.sample_every and (s % cfg.sample_every == 0 or s == cfg.steps):
            self._write_samples()
        # Never checkpoint in the middle of a run of failed steps: the file on disk stays the
        # last state that was reached by a healthy step.
        if (s % cfg.checkpoint_every == 0 or last or self.stopped_early) and self.bad_steps == 0:
            self.save_checkpoint()

    def _validate(self, epoch: int) -> None:
        """Score the validation set and hand the score to :attr:`selection`."""
        averaged = self.evaluate(self.val_data)
        raw = None
        if self.ema is not None and self.config.select_raw:
            # The same validation noise for both (evaluate isolates its random state), so the
            # two scores differ only by the weights.
            raw = self.evaluate(self.val_data, use_ema=False)
        metrics, kind = ModelSelection.choose(averaged, raw, has_ema=self.ema is not None)
        improved = self.selection.observe(self.step, metrics["bits_per_dim"], self.model,
                                          self.ema, kind)
        both = {} if raw is None else {"val_ema_bits_per_dim": averaged["bits_per_dim"],
                                       "val_raw_bits_per_dim": raw["bits_per_dim"]}
        self._record({
            "step": self.step, "epoch": epoch, "val_nll": metrics["nll"],
            "val_bits_per_dim": metrics["bits_per_dim"], **both,
            "time_s": time.perf_counter() - self._start_time,
        })
        if improved and self.folder is not None:
            state = self.state_dict(weights=self.selection.best_weights)  # collective
            if self.info.is_main:
                with self._guard(state):
                    self.writer.save_best(state)
        if self.stopped_early and self.info.is_main:
            sel = self.selection
            warnings.warn(
                f"early stop at step {self.step}: validation bits/dim has not improved for "
                f"{sel.evals_since_best} evaluations (best {sel.best_score:.4f} at step "
                f"{sel.best_step})", UserWarning, stacklevel=3,
            )

    def _finish(self) -> None:
        """End of training: hold the best-on-validation weights; evaluate the test set once."""
        if self.val_data is not None:
            self.selection.hold_best(self.model, self.ema, load_best_file(
                self.folder.best if self.folder is not None else None))
        if self.test_data is None:
            return
        if self.test_result is not None and self.test_result.get("trained_steps") == self.step:
            return
        metrics = self.evaluate(self.test_data)
        self.test_result = self.selection.report(metrics, self.step)
        self._record({"step": self.step, "test_nll": metrics["nll"],
                      "test_bits_per_dim": metrics["bits_per_dim"],
                      "time_s": time.perf_counter() - self._start_time})
        with self._guard():
            self.writer.write_test(self.test_result)

    def _record(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        with self._guard():
            self.writer.log(row)

    def _write_samples(self) -> None:
        if not self.info.is_main or self.run_dir is None or not hasattr(self.eval_model, "sample"):
            return
        x = self.sample(self.config.n_samples, seed=self.config.seed)
        with self._guard():
            self.writer.write_samples(self._save_samples, x, self.step)

    @contextlib.contextmanager
    def _guard(self, state: dict[str, Any] | None = None) -> Iterator[None]:
        """A failed write of the run folder becomes the :class:`RunFolderError` of the rescue
        policy (:mod:`.persistence`), given the run's state (this process's, if none)."""
        try:
            yield
        except WriteFailed as failed:
            if state is None and self._prepared and self.info.is_main:
                try:
                    state = self.state_dict(gather=False)
                except Exception:  # noqa: BLE001 - then nothing can be rescued; said
                    state = None
            raise self.writer.failure(failed, state, self.step, started=self._prepared) \
                from failed.error

    # ------------------------------------------------------------------ small helpers
    def _bits_per_dim_fn(self, data: Tensor | Dataset) -> Callable[[float], float]:
        if self._bpd is not None:
            return self._bpd
        x0 = first_tensor(data[:1] if isinstance(data, Tensor) else data[0])
        dims = math.prod(x0.shape[1:]) if isinstance(data, Tensor) else x0.numel()
        return lambda nll: nll_to_bits_per_dim(nll, dims)

    def _barrier(self) -> None:
        if self.info.distributed:
            dist.barrier()

    def _progress_bar(self, end: int) -> Any:
        from tqdm.auto import tqdm

        show = self.config.progress and self.info.is_main and sys.stderr.isatty()
        return tqdm(total=end, initial=self.step, disable=not show, desc="train",
                    unit="step", dynamic_ncols=True)


def _accepts(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


_seed_everything = seed_everything  # the old private name, for callers that used it
