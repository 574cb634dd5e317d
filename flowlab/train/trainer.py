r"""The training loop shared by the book, the command line and the benchmarks.

A flow is trained by maximum likelihood: each step draws a batch :math:`x_1, \dots, x_B` and
takes a gradient step on the mean negative log-likelihood

.. math::

    \mathcal{L}(\theta) = -\frac1B \sum_{b=1}^{B} \log p_\theta(x_b)
    = -\frac1B \sum_{b=1}^{B} \Big[\log p_Z\big(f_\theta(x_b)\big)
      + \log\big|\det Df_\theta(x_b)\big|\Big].

Around that one line the :class:`Trainer` adds what a real run needs: AdamW with linear
warm-up and cosine decay, gradient clipping, an optional EMA of the weights, optional bfloat16
autocast and ``torch.compile``, several processes through ``torchrun``, and **honest model
selection**: a validation split carved from the training data (:mod:`.split`) is scored every
``eval_every`` steps, the best-on-validation weights are kept (``best.pt``), ``patience``
stops early, and the test set is evaluated exactly once, at the end, on the selected weights
(never during training).  The pieces around the loop live in their own modules: the run
folder (:mod:`.runfolder`), checkpoints (:mod:`.checkpoint`), random states (:mod:`.rng`),
gradient health (:mod:`.health`).

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
import copy
import inspect
import json
import math
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from ..checks import check_finite
from .checkpoint import as_os_error, load_checkpoint, readable_checkpoint, save_checkpoint
from .config import TrainConfig
from .distributed import DistInfo, setup
from .ema import make_ema
from .evaluate import evaluate_nll, first_tensor, nll_to_bits_per_dim
from .health import TrainingDiverged, divergence_message, gradient_norm
from .logger import MetricsLogger
from .rng import rng_state, seed_everything, set_rng_state
from .runfolder import (
    RunDirExistsError,
    RunFolder,
    RunFolderError,
    describe_os_error,
    folder_error,
    rescue,
    rescue_dir,
)
from .samples import save_samples
from .schedule import continue_schedule, position, warmup_cosine
from .split import ValidationSplit, find_labels

__all__ = [
    "Trainer", "NegativeLogLikelihood", "TrainingDiverged", "TrainingInterrupted",
    "RunDirExistsError", "RunFolderError",
]  # fmt: skip

FORMAT = "flowlab-checkpoint/2"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped :meth:`Trainer.fit` at a step boundary.

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


class NegativeLogLikelihood(nn.Module):
    r"""Per-sample loss :math:`-\log p_\theta(x_b)` of any model with ``log_prob``.

    DistributedDataParallel synchronises gradients only for what runs through a module's
    ``forward``, and a flow's training quantity is ``log_prob``; this thin wrapper makes it the
    ``forward``.  The result is promoted to at least float32, so under bfloat16 autocast the sum
    of log-determinants and the loss are accumulated in float32.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not callable(getattr(model, "log_prob", None)):
            raise TypeError(
                f"the trainer needs a model with a log_prob(x) method (e.g. a flowlab.Flow), "
                f"got {type(model).__name__}"
            )
        self.model = model

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        log_prob = self.model.log_prob(x) if context is None else self.model.log_prob(x, context)
        return -log_prob.to(torch.promote_types(log_prob.dtype, torch.float32))


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
        self.folder = RunFolder(cfg.run_dir) if cfg.run_dir else None
        self.run_dir = self.folder.path if self.folder else None
        self.metadata = dict(metadata or {})

        # The validation split: carved from the training data (or given), recorded on disk.
        self.full_train_data = train_data
        self.split: ValidationSplit | None = None
        if val_data is None and cfg.val_fraction > 0:
            recorded = self.folder.split if self.folder and cfg.resume else None
            if recorded is not None and recorded.is_file():
                self.split = ValidationSplit.load(recorded)
                if (self.split.fraction, self.split.seed) != (cfg.val_fraction, cfg.seed):
                    raise ValueError(
                        f"the run's validation split (split.json) was drawn with val_fraction="
                        f"{self.split.fraction}, seed={self.split.seed}; a resumed run keeps it: "
                        "do not change --val-fraction or --seed when resuming"
                    )
            else:
                lab = labels if labels is not None else find_labels(train_data)
                self.split = ValidationSplit.draw(len(train_data), cfg.val_fraction, cfg.seed, lab)
            train_data, val_data = self.split.apply(train_data)
        self.train_data = train_data
        self.val_data = val_data
        self.test_data = test_data
        self._bpd = bits_per_dim
        self._save_samples = save_samples_fn or (lambda x, path: save_samples(x, path))

        # Data order: a DistributedSampler even on one process.  It permutes with the seed
        # `seed + epoch`, and rank r takes every world_size-th index, so N processes see
        # exactly the global batches of a single process, split between them.
        self.local_batch = cfg.batch_size // self.info.world_size
        self.sampler = DistributedSampler(
            range(len(train_data)), num_replicas=self.info.world_size, rank=self.info.rank,
            shuffle=True, seed=cfg.seed, drop_last=True,
        )
        self.steps_per_epoch = len(self.sampler) // self.local_batch
        if self.steps_per_epoch == 0:
            held = f" after holding out {len(val_data)} for validation" if self.split else ""
            raise ValueError(
                f"the training set has {len(train_data)} samples{held}, fewer than one batch "
                f"per process ({self.local_batch}): lower batch_size"
            )

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
        self.step = 0
        self.bad_steps = 0
        # Model selection on validation: best score so far, where, and the patience counter.
        self.best_score = math.inf
        self.best_step: int | None = None
        # which weights scored best: "model" (no EMA), "ema" or "raw"
        self.selected_weights = "model" if self.ema is None else "ema"
        self.evals_since_best = 0
        self.stopped_early = False
        self.test_result: dict[str, Any] | None = None
        self._best_weights: dict[str, Any] | None = None
        self._last_weights: dict[str, Any] | None = None  # while the model holds the best ones
        self.history: list[dict[str, Any]] = []
        self._prepared = False
        self._logger: MetricsLogger | None = None
        self._interrupt = False
        self._hard_interrupt = False

    # ------------------------------------------------------------------ the public verbs
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
        if self._last_weights is not None and self.step < end and not self.stopped_early:
            self._hold_weights(self._last_weights)  # continue from the last, not the best
            self._last_weights = None
        if self.info.is_main and self._logger is None:
            self._io("metrics.csv", lambda: setattr(
                self, "_logger", MetricsLogger(self.run_dir, resume_step=self.step)))
        bar = self._progress_bar(end)
        self._postfix = {}
        window = _Window()
        try:
            with _checks_disabled(self.model), self._sigint_stops_gracefully():
                while self.step < end and not self.stopped_early:
                    epoch, first = divmod(self.step, self.steps_per_epoch)
                    for x in self._batches(epoch, first):
                        lr = self.optimizer.param_groups[0]["lr"]
                        loss, gnorm, ok = self._train_step(x)
                        n = first_tensor(x).shape[0]
                        window.add(loss, gnorm, ok, n * self.info.world_size)
                        bar.update(1)
                        self._after_step(end, epoch, lr, window, bar)
                        if self._interrupt:
                            raise KeyboardInterrupt
                        if self.step >= end or self.stopped_early:
                            break
                if self.step >= cfg.steps or self.stopped_early:
                    self._finish()
        except KeyboardInterrupt:
            path = self._save_on_interrupt()
            saved = None
            if path is not None and path.is_file():
                try:
                    saved = int(load_checkpoint(path)["step"])
                except (ValueError, OSError):
                    path = None
            raise TrainingInterrupted(self.step, path, saved) from None
        finally:
            bar.close()
            if self._logger is not None:
                self._logger.close()
                self._logger = None
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
        with self._isolated_rng():
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
        ctx = self._isolated_rng(seed) if seed is not None else contextlib.nullcontext()
        kwargs: dict[str, Any] = {}
        if temperature != 1.0 or _accepts(model.sample, "temperature"):
            kwargs["temperature"] = temperature
        if context is None and self.conditional:
            context = self._training_contexts(n)
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
        weights = weights or self._last_weights or {
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
            "rng": self._gather_rng() if gather else [rng_state()],
            "world_size": self.info.world_size,
            "config": self.config.to_dict(),
            "selection": {
                "best_score": self.best_score, "best_step": self.best_step,
                "selected_weights": self.selected_weights,
                "evals_since_best": self.evals_since_best, "stopped_early": self.stopped_early,
            },
            "split": None if self.split is None else self.split.to_dict(),
            "test": self.test_result,
            "metadata": self.metadata,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._load_schedule(state["scheduler"], int(state["step"]))
        if self.ema is not None:
            if state.get("ema") is None:
                warnings.warn("the checkpoint has no EMA weights; the EMA restarts from the model")
                self.ema = make_ema(self.model, self.config.ema_decay)
            else:
                self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        self.bad_steps = int(state.get("bad_steps", 0))
        sel = state.get("selection") or {}
        self.best_score = float(sel.get("best_score", math.inf))
        self.best_step = sel.get("best_step")
        self.selected_weights = sel.get("selected_weights",
                                        "model" if self.ema is None else "ema")
        self.evals_since_best = int(sel.get("evals_since_best", 0))
        self.stopped_early = bool(sel.get("stopped_early", False))
        self.test_result = state.get("test")
        if state.get("split") and self.split is not None:
            if ValidationSplit.from_dict(state["split"]) != self.split:
                raise ValueError(
                    "the checkpoint's validation split differs from this run's (split.json, "
                    "seed, val_fraction or data changed): resume with the run's own settings"
                )
        states = state.get("rng") or []
        if len(states) == self.info.world_size:
            set_rng_state(states[self.info.rank])
        else:
            warnings.warn(
                f"the checkpoint was written by {len(states)} process(es), this run has "
                f"{self.info.world_size}: random streams restart from the seed, so the "
                "continuation is not bit-for-bit identical"
            )
            seed_everything(self.config.seed + 7919 * self.step + self.info.rank)

    def _load_schedule(self, saved: Any, step: int) -> None:
        """Restore the learning-rate schedule at ``step``; rebuild it if ``steps`` changed.

        A resumed run with a new ``steps`` (``--resume --steps N``) continues with a cosine
        from the current rate down to the floor at the new end (:mod:`.schedule`): the rate
        never jumps back up.  Checkpoints written before the schedule was a closed form hold
        another scheduler's state; the same schedule is then positioned at ``step``."""
        lambdas = saved.get("lr_lambdas") if isinstance(saved, dict) else None
        if lambdas and isinstance(lambdas[0], dict) and "total_steps" in lambdas[0]:
            self.scheduler.load_state_dict(saved)
        else:
            position(self.scheduler, step)
        planned = self.scheduler.lr_lambdas[0].total_steps
        if planned != self.config.steps:
            before = self.optimizer.param_groups[0]["lr"]
            self.scheduler = continue_schedule(self.scheduler, step, self.config.steps)
            floor = self.scheduler.base_lrs[0] * self.config.min_lr_ratio
            if self.info.is_main:
                warnings.warn(
                    f"steps changed from {planned} to {self.config.steps} on resume: the "
                    f"learning rate continues from {before:.3g} at step {step} and decays to "
                    f"{floor:.3g} at step {self.config.steps} (a cosine over the new horizon; "
                    "it never rises again: for a fresh decay from --lr, start a new run)",
                    UserWarning, stacklevel=3,
                )

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
        if self.folder is None:
            return None
        folder = self.folder
        return self._io(folder.last.name, lambda: save_checkpoint(
            state, folder.last, keep_previous=folder.previous), state=state)

    # ------------------------------------------------------------------ internals
    def prepare(self) -> None:
        """Check the run folder, resume, initialise data-dependent layers, wrap the model for
        DDP and ``torch.compile``.  :meth:`fit` calls it; call it first to catch setup errors
        (an existing or unwritable run folder, a missing checkpoint) before any training."""
        if self._prepared:
            return
        cfg = self.config
        checkpoint = None
        if self.folder is not None:
            if cfg.resume:
                path = Path(cfg.resume_from) if cfg.resume_from else self.folder.resume_checkpoint()
                if not path.is_file():
                    raise FileNotFoundError(
                        f"nothing to resume: {str(path)!r} does not exist (drop --resume to "
                        "start a new run there)"
                        + (f"; the previous checkpoint {str(self.folder.previous)!r} is kept: "
                           f"pass --resume-from {self.folder.previous}"
                           if not cfg.resume_from and readable_checkpoint(self.folder.previous)
                           else "")
                    )
                checkpoint = load_checkpoint(path, map_location=self.device)
            else:
                found = self.folder.check_new(cfg.overwrite)
                self._barrier()  # every rank has looked before rank 0 deletes
                if self.info.is_main:
                    self.folder.remove(found)
            if self.info.is_main:
                self.folder.ensure_writable()
            self._barrier()
        elif cfg.resume:
            raise ValueError("resume needs a run_dir holding the checkpoint")
        seed_everything(cfg.seed + self.info.rank)
        # The full training data (so a bad sample's index is the caller's), an explicit
        # validation set, the test set.
        explicit_val = self.val_data if self.split is None else None
        for name, data in (("training", self.full_train_data), ("validation", explicit_val),
                           ("test", self.test_data)):
            if data is not None:
                _check_finite_data(data, name)

        # One gradient-free forward pass initialises data-dependent layers (ActNorm); DDP then
        # copies rank 0's parameters and buffers to every process.  On resume the checkpoint
        # overwrites whatever it set.
        with self._isolated_rng(), torch.no_grad():
            self.loss_module(*_as_args(next(self._batches(0, 0))))
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
        if self.info.is_main and self.folder is not None:
            import yaml

            folder = self.folder
            settings = {**self.metadata.get("recipe", {}), **cfg.to_dict()}
            self._io(folder.config.name, lambda: folder.config.write_text(yaml.safe_dump(settings)))
            if self.split is not None:
                split = self.split
                self._io(folder.split.name, lambda: split.save(folder.split))
        self._barrier()
        self._start_time = time.perf_counter()
        self._prepared = True

    def _batches(self, epoch: int, first: int) -> Iterator[Tensor | tuple[Tensor, Tensor]]:
        """The batches ``first, first+1, ...`` of ``epoch`` for this process: tensors, or
        ``(x, context)`` pairs for a conditional model."""
        self.sampler.set_epoch(epoch)
        order = torch.tensor(list(self.sampler), dtype=torch.long)
        b = self.local_batch
        chunks = [order[k * b : (k + 1) * b] for k in range(first, self.steps_per_epoch)]
        if isinstance(self.train_data, (Tensor, TensorDataset)):
            batches: Any = (self.train_data[idx] for idx in chunks)
        else:
            # A private generator: creating the loader's iterator then leaves the global
            # random state alone, which keeps resumed runs identical.
            batches = DataLoader(
                self.train_data, batch_sampler=[c.tolist() for c in chunks],
                num_workers=self.config.num_workers, generator=torch.Generator(),
                pin_memory=self.device.type == "cuda",
            )
        for batch in batches:
            x = first_tensor(batch)
            if x.dim() == 0 or x.shape[0] == 0:
                raise ValueError(
                    f"the training data gave an empty batch (shape {tuple(x.shape)}) at step "
                    f"{self.step + 1}: a Dataset must yield one sample per index"
                )
            dtype = self.dtype if x.is_floating_point() else None
            x = x.to(device=self.device, dtype=dtype, non_blocking=True)
            if not self.conditional:
                yield x
                continue
            if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
                raise TypeError(
                    f"{type(self.model).__name__} is conditional (its layers read a context): "
                    "give data that yield (x, context) pairs, e.g. "
                    "torch.utils.data.TensorDataset(x, c)"
                )
            c = torch.as_tensor(batch[1])
            c_dtype = self.dtype if c.is_floating_point() else None
            yield x, c.to(device=self.device, dtype=c_dtype, non_blocking=True)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _train_step(self, x: Tensor, measure_norm: bool = True) -> tuple[float, float, bool]:
        """One optimisation step; returns the (global mean) loss, the gradient norm and
        whether the step was taken (``measure_norm`` is kept for compatibility: the norm is
        always measured, it is the gradient check, :mod:`flowlab.train.health`)."""
        cfg = self.config
        if not self.model.training:
            self.model.train()
        with self._autocast():
            nll = self._net(*_as_args(x))
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

    def _after_step(self, end: int, epoch: int, lr: float, window: "_Window", bar: Any) -> None:
        cfg, s = self.config, self.step
        last = s == end
        if s % cfg.log_every == 0 or last:
            elapsed = time.perf_counter() - window.start
            row = {
                "step": s, "epoch": epoch, "lr": lr,
                "loss": window.mean_loss(), "grad_norm": window.mean_gnorm(),
                "samples_per_s": window.samples / max(elapsed, 1e-9),
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
            self._postfix.update(val_bpd=f"{self._last_val:.3f}", best=f"{self.best_score:.3f}")
            bar.set_postfix(self._postfix, refresh=False)
        if cfg.sample_every and (s % cfg.sample_every == 0 or s == cfg.steps):
            self._write_samples()
        # Never checkpoint in the middle of a run of failed steps: the file on disk stays the
        # last state that was reached by a healthy step.
        if (s % cfg.checkpoint_every == 0 or last or self.stopped_early) and self.bad_steps == 0:
            self.save_checkpoint()

    _last_val = math.nan
    _postfix: dict[str, str] = {}

    def _validate(self, epoch: int) -> None:
        """Score the validation set; keep the best weights; count patience."""
        metrics = self.evaluate(self.val_data)
        kind = "model" if self.ema is None else "ema"
        both: dict[str, float] = {}
        if self.ema is not None and self.config.select_raw:
            # The same validation noise for both (evaluate isolates its random state), so the
            # two scores differ only by the weights.
            raw = self.evaluate(self.val_data, use_ema=False)
            both = {"val_ema_bits_per_dim": metrics["bits_per_dim"],
                    "val_raw_bits_per_dim": raw["bits_per_dim"]}
            if raw["bits_per_dim"] < metrics["bits_per_dim"]:
                metrics, kind = raw, "raw"
        score = metrics["bits_per_dim"]
        self._last_val = score
        improved = score < self.best_score
        if improved:
            self.best_score, self.best_step, self.evals_since_best = score, self.step, 0
            self.selected_weights = kind
            self._best_weights = self._copy_weights(kind)
        else:
            self.evals_since_best += 1
            if self.config.patience and self.evals_since_best >= self.config.patience:
                self.stopped_early = True
        self._record({
            "step": self.step, "epoch": epoch, "val_nll": metrics["nll"],
            "val_bits_per_dim": score, **both,
            "time_s": time.perf_counter() - self._start_time,
        })
        if improved and self.folder is not None:
            self._save_best()
        if self.stopped_early and self.info.is_main:
            warnings.warn(
                f"early stop at step {self.step}: validation bits/dim has not improved for "
                f"{self.evals_since_best} evaluations (best {self.best_score:.4f} at step "
                f"{self.best_step})", UserWarning, stacklevel=3,
            )

    def _copy_weights(self, kind: str) -> dict[str, Any]:
        """A CPU copy of the live weights; for ``kind == "raw"`` the EMA slot holds the raw
        weights too, so that everything that reads the EMA (evaluation, sampling,
        :func:`~flowlab.train.load_run`, the shipped checkpoints) gets the weights chosen."""
        model = _cpu_copy(self.model.state_dict())
        if self.ema is None:
            return {"model": model, "ema": None}
        ema = _cpu_copy(self.ema.state_dict())
        if kind == "raw":
            inner = {k[len("module."):] for k in ema if k.startswith("module.")}
            if inner != set(model):
                raise RuntimeError(
                    "the EMA copy and the model have different state keys; cannot hold the raw "
                    "weights in the EMA slot (set select_raw: false)")
            ema.update({f"module.{k}": v for k, v in model.items()})  # already a copy
        return {"model": model, "ema": ema}

    def _save_best(self) -> None:
        state = self.state_dict(weights=self._best_weights)  # collective
        if self.info.is_main and self.folder is not None:
            path = self.folder.best
            self._io(path.name, lambda: save_checkpoint(state, path), state=state)

    def _finish(self) -> None:
        """End of training: hold the best-on-validation weights; evaluate the test set once."""
        if self.val_data is not None and self.best_step is not None and self._last_weights is None:
            best = self._best_weights
            if best is None and self.folder is not None and self.folder.best.is_file():
                state = load_checkpoint(self.folder.best, map_location="cpu")
                best = {"model": state["model"], "ema": state.get("ema")}
            if best is not None:
                self._last_weights = {
                    "model": _cpu_copy(self.model.state_dict()),
                    "ema": None if self.ema is None else _cpu_copy(self.ema.state_dict()),
                }
                self._hold_weights(best)
        if self.test_data is None:
            return
        done = self.test_result is not None and self.test_result.get("trained_steps") == self.step
        if done:
            return
        metrics = self.evaluate(self.test_data)
        selected = self.best_step if self.best_step is not None else self.step
        self.test_result = {
            **metrics, "selected_step": selected, "trained_steps": self.step,
            "selected_on": (
                "validation" if self.best_step is not None else "last step (no validation)"
            ),
            "best_val_bits_per_dim": None if self.best_step is None else self.best_score,
            "selected_weights": self.selected_weights,
            "stopped_early": self.stopped_early,
        }
        self._record({"step": self.step, "test_nll": metrics["nll"],
                      "test_bits_per_dim": metrics["bits_per_dim"],
                      "time_s": time.perf_counter() - self._start_time})
        if self.info.is_main and self.folder is not None:
            folder, result = self.folder, self.test_result
            self._io(folder.test.name, lambda: folder.test.write_text(json.dumps(result, indent=1)))

    def _hold_weights(self, weights: dict[str, Any]) -> None:
        self.model.load_state_dict(weights["model"])
        if self.ema is not None and weights.get("ema") is not None:
            self.ema.load_state_dict(weights["ema"])

    def _record(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self._logger is not None:
            logger = self._logger
            self._io("metrics.csv", lambda: logger.log(row))

    def _io(self, what: str, write: Callable[[], Any], state: dict[str, Any] | None = None) -> Any:
        """Run a write of the run folder; on ``OSError`` save the state elsewhere and raise
        :class:`RunFolderError` saying where (the trained steps are never lost silently)."""
        try:
            return write()
        except (OSError, RuntimeError) as caught:
            err = as_os_error(caught)  # torch.save reports a full disk as a RuntimeError
            if not isinstance(err, OSError):
                raise
            if isinstance(err, RunFolderError):
                raise
            reason = describe_os_error(err)
            where = self.run_dir
            if not self._prepared:
                raise folder_error(
                    f"cannot write {what} in the run folder {str(where)!r}: {reason}. Nothing "
                    "was trained; choose another --run-dir.", err) from err
            rescued, failure = self._rescue(state)
            if rescued is not None:
                kept = (f"The state at step {self.step} was saved to {str(rescued)!r} instead "
                        "(read back: it loads): continue with 'flowlab train --run-dir DIR "
                        f"--resume-from {rescued}' once DIR can be written (or copy it to "
                        "DIR/last.pt).")
            else:
                last = self.folder.last if self.folder else None
                last = last if last is not None and readable_checkpoint(last) else None
                kept = ("The state could not be saved anywhere else either"
                        + (f" ({failure})" if failure else "")
                        + (f"; the last checkpoint on disk is {str(last)!r} (step "
                           f"{int(load_checkpoint(last)['step'])})." if last else
                           "; no readable checkpoint is left."))
            raise folder_error(
                f"cannot write {what} in the run folder {str(where)!r}: {reason}. Training "
                f"stopped at step {self.step}. {kept}", err) from err

    def _rescue(self, state: dict[str, Any] | None = None) -> tuple[Path | None, str | None]:
        """Save the state to the fallback folder (:func:`~.runfolder.rescue`, which reads it
        back); returns the path, or ``None`` and why not."""
        if not self.info.is_main:
            return None, None
        try:
            state = state if state is not None else self.state_dict(gather=False)
            return rescue(lambda p: save_checkpoint(state, p), "last.pt", load_checkpoint), None
        except Exception as err:  # noqa: BLE001 - reported by the caller
            return None, str(err)

    def _save_on_interrupt(self) -> Path | None:
        """The checkpoint that holds the interrupted run (written now if it is healthy)."""
        if self.folder is None or not self.info.is_main or not self._prepared:
            return None
        if self.bad_steps == 0 and self.step > 0 and not self._hard_interrupt:
            # Only this process saves (the others may be interrupted at another point): no
            # collective call, so its random state alone is kept.
            state = self.state_dict(gather=not self.info.distributed)
            folder = self.folder
            try:
                return self._io(folder.last.name, lambda: save_checkpoint(
                    state, folder.last, keep_previous=folder.previous), state=state)
            except RunFolderError as err:
                print(f"flowlab: {err}", file=sys.stderr)
                return _rescued_path(err)
        return self.folder.last if self.folder.last.is_file() else None

    @contextlib.contextmanager
    def _sigint_stops_gracefully(self) -> Iterator[None]:
        """First Ctrl-C: finish the step in progress, save, stop.  A second one: stop now."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._interrupt = self._hard_interrupt = False

        def handler(signum: int, frame: Any) -> None:
            if self._interrupt:  # a second Ctrl-C: stop now, mid-step; keep the last file
                self._hard_interrupt = True
                raise KeyboardInterrupt
            self._interrupt = True

        try:
            previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main interpreter
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _training_contexts(self, n: int) -> Tensor:
        """The contexts of training samples ``0, 1, ..., n-1`` (cycled)."""
        data = self.full_train_data
        idx = torch.arange(n) % len(data)
        if isinstance(data, TensorDataset):
            return data.tensors[1][idx]
        return torch.stack([torch.as_tensor(data[int(i)][1]) for i in idx])

    def _write_samples(self) -> None:
        if not self.info.is_main or self.run_dir is None or not hasattr(self.eval_model, "sample"):
            return
        x = self.sample(self.config.n_samples, seed=self.config.seed)
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        self._io(f"samples/{path.name}", lambda: self._save_samples(x, path))

    def _bits_per_dim_fn(self, data: Tensor | Dataset) -> Callable[[float], float]:
        if self._bpd is not None:
            return self._bpd
        x0 = first_tensor(data[:1] if isinstance(data, Tensor) else data[0])
        dims = math.prod(x0.shape[1:]) if isinstance(data, Tensor) else x0.numel()
        return lambda nll: nll_to_bits_per_dim(nll, dims)

    def _gather_rng(self) -> list[dict[str, Any]]:
        mine = rng_state()
        if not self.info.distributed:
            return [mine]
        everyone: list[Any] = [None] * self.info.world_size
        dist.all_gather_object(everyone, mine)
        return everyone

    @contextlib.contextmanager
    def _isolated_rng(self, seed: int | None = None) -> Iterator[None]:
        """Run a block with a fixed seed, then restore the training's random state."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed if seed is None else seed)
            yield

    def _barrier(self) -> None:
        if self.info.distributed:
            dist.barrier()

    def _progress_bar(self, end: int) -> Any:
        from tqdm.auto import tqdm

        show = self.config.progress and self.info.is_main and sys.stderr.isatty()
        return tqdm(total=end, initial=self.step, disable=not show, desc="train",
                    unit="step", dynamic_ncols=True)


@contextlib.contextmanager
def _checks_disabled(model: nn.Module) -> Iterator[None]:
    """:meth:`flowlab.Flow.checks_disabled` for every flow in ``model`` (the per-call data
    checks -- NaN/inf, integer levels -- read the whole batch, a host-device synchronisation
    on a GPU, and are redundant here: the data were checked once in :meth:`Trainer.prepare`,
    and a non-finite loss skips the step)."""
    from ..flow import Flow

    with contextlib.ExitStack() as stack:
        for m in model.modules():
            if isinstance(m, Flow):
                stack.enter_context(m.checks_disabled())
        yield


class _Window:
    """Running sums of the steps since the last logged row."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss = self.gnorm = 0.0
        self.good = self.skipped = self.samples = 0
        self.start = time.perf_counter()

    def add(self, loss: float, gnorm: float, ok: bool, samples: int) -> None:
        self.samples += samples
        if ok:
            self.loss += loss
            self.gnorm += gnorm
            self.good += 1
        else:
            self.skipped += 1

    def mean_loss(self) -> float:
        return self.loss / self.good if self.good else math.nan

    def mean_gnorm(self) -> float:
        """Mean gradient norm (before clipping) over the healthy steps of the window."""
        return self.gnorm / self.good if self.good else math.nan


def _cpu_copy(state: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.detach().to("cpu", copy=True) if isinstance(v, Tensor) else copy.deepcopy(v))
            for k, v in state.items()}


def _rescued_path(err: RunFolderError) -> Path | None:
    path = rescue_dir() / "last.pt"
    return path if path.is_file() and str(path) in str(err) else None


def _check_finite_data(data: Tensor | Dataset, name: str) -> None:
    """One pass over in-memory tensor data: NaN/inf would otherwise only show up as skipped
    steps (datasets are checked batch by batch through the loss)."""
    if isinstance(data, Tensor) and data.is_floating_point():
        check_finite(data, name=f"the {name} data", layer="Trainer")
    elif isinstance(data, TensorDataset):
        for what, t in zip(("data", "contexts"), data.tensors):
            if t.is_floating_point():
                check_finite(t, name=f"the {name} {what}", layer="Trainer")


def _as_args(batch: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, ...]:
    """The loss's arguments: ``(x,)`` or ``(x, context)``."""
    return (batch,) if isinstance(batch, Tensor) else tuple(batch)


def _accepts(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


_seed_everything = seed_everything  # the old private name, for callers that used it
