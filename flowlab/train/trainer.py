r"""The training loop shared by the book, the command line and the benchmarks.

A flow is trained by maximum likelihood: each step draws a batch :math:`x_1, \dots, x_B` and
takes a gradient step on the mean negative log-likelihood

.. math::

    \mathcal{L}(\theta) = -\frac1B \sum_{b=1}^{B} \log p_\theta(x_b)
    = -\frac1B \sum_{b=1}^{B} \Big[\log p_Z\big(f_\theta(x_b)\big)
      + \log\big|\det Df_\theta(x_b)\big|\Big].

Around that one line the :class:`Trainer` adds what a real run needs: AdamW with linear
warm-up and cosine decay, gradient clipping, an optional EMA of the weights, optional bfloat16
autocast and ``torch.compile``, several processes through ``torchrun`` and
:class:`~torch.nn.parallel.DistributedDataParallel`, a guard against non-finite losses and
gradients, atomic checkpoints with every random state (so ``resume`` continues bit for bit on
a CPU), metrics in a CSV file and sample grids as PNG files.

Example:
    >>> trainer = Trainer(flow, train_x, test_x, TrainConfig(steps=2000, run_dir=None))
    >>> history = trainer.fit()           # list of logged rows
    >>> trainer.evaluate()                # {'nll': ..., 'bits_per_dim': ...}
"""

from __future__ import annotations

import contextlib
import inspect
import math
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..checks import check_finite
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig
from .distributed import DistInfo, setup
from .ema import make_ema
from .evaluate import evaluate_nll, first_tensor, nll_to_bits_per_dim
from .logger import MetricsLogger
from .samples import save_samples
from .schedule import warmup_cosine

__all__ = ["Trainer", "NegativeLogLikelihood", "TrainingDiverged", "RunDirExistsError"]

CHECKPOINT = "checkpoint.pt"
_RUN_FILES = (CHECKPOINT, "metrics.csv", "config.yaml")


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient."""


class RunDirExistsError(FileExistsError):
    """The run folder already holds results and neither resume nor overwrite was asked for."""


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

    def forward(self, x: Tensor) -> Tensor:
        log_prob = self.model.log_prob(x)
        return -log_prob.to(torch.promote_types(log_prob.dtype, torch.float32))


class Trainer:
    """Maximum-likelihood training of ``model`` on ``train_data``.

    Args:
        model: anything with ``log_prob(x) -> (batch,)``; sampling needs ``sample(n)`` too.
        train_data: a tensor of shape ``(N, *event_shape)`` (fastest) or a
            :class:`~torch.utils.data.Dataset` yielding tensors or ``(tensor, label)`` pairs.
        test_data: the same kinds, for the test NLL and bits/dim (optional).
        config: a :class:`TrainConfig`; keyword ``overrides`` replace its fields.
        bits_per_dim: maps a mean NLL in nats to bits/dim; default
            :math:`\\mathrm{NLL}/(D\\ln 2)`.  Image pipelines that rescale 8-bit pixels pass
            their own (it adds the rescaling's log-determinant).
        save_samples_fn: ``fn(samples, path)`` writing a PNG; default draws 2-D scatter plots
            and image grids (:func:`flowlab.train.samples.save_samples`).

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
        bits_per_dim: Callable[[float], float] | None = None,
        save_samples_fn: Callable[[Tensor, Path], Any] | None = None,
        **overrides: Any,
    ) -> None:
        self.config = cfg = (config or TrainConfig()).updated(overrides)
        self.info: DistInfo = setup(cfg.device)
        if cfg.batch_size % self.info.world_size:
            raise ValueError(
                f"batch_size {cfg.batch_size} must be divisible by the number of processes "
                f"({self.info.world_size}): it is the global batch, split evenly between them"
            )
        self.device = self.info.device
        self.model = model.to(self.device)
        self.loss_module = NegativeLogLikelihood(self.model)
        ref = next((p for p in self.model.parameters() if p.is_floating_point()), None)
        if ref is None:
            raise ValueError("the model has no floating-point parameters to train")
        self.dtype = ref.dtype
        self.train_data = train_data
        self.test_data = test_data
        self._bpd = bits_per_dim
        self._save_samples = save_samples_fn or (lambda x, path: save_samples(x, path))
        self.run_dir = Path(cfg.run_dir) if cfg.run_dir else None

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
            raise ValueError(
                f"the training set has {len(train_data)} samples, fewer than one batch per "
                f"process ({self.local_batch}): lower batch_size"
            )

        self._params = [p for p in self.model.parameters() if p.requires_grad]
        # The fused AdamW kernel (one pass over all parameters instead of ~10 small ops per
        # tensor) where PyTorch has it (CPU, CUDA); the result is the same algorithm.
        self.optimizer = torch.optim.AdamW(
            self._params, lr=cfg.lr, weight_decay=cfg.weight_decay,
            fused=True if self._params and self.device.type in ("cpu", "cuda") else None,
        )
        # Without clipping, most steps only check the gradients for NaN/inf with PyTorch's
        # fused AMP kernel, whose contract is one device and one floating dtype.
        self._flag_check = len({(p.device, p.dtype) for p in self._params}) == 1
        self._one = torch.ones((), device=self.device)
        self.scheduler = warmup_cosine(
            self.optimizer, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio
        )
        self.ema = make_ema(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.step = 0
        self.bad_steps = 0
        self.history: list[dict[str, Any]] = []
        self._prepared = False
        self._logger: MetricsLogger | None = None

    # ------------------------------------------------------------------ the public verbs
    def fit(self, stop_at: int | None = None) -> list[dict[str, Any]]:
        """Train until ``config.steps`` (or until step ``stop_at``, leaving a checkpoint to
        resume from); returns the logged rows (also in ``<run_dir>/metrics.csv``)."""
        cfg = self.config
        if not self._prepared:
            self.prepare()
        end = cfg.steps if stop_at is None else min(int(stop_at), cfg.steps)
        if self.info.is_main and self._logger is None:
            self._logger = MetricsLogger(self.run_dir, resume_step=self.step)
        bar = self._progress_bar(end)
        window = _Window()
        checks = _InputChecksOff(self.model)
        try:
            while self.step < end:
                epoch, first = divmod(self.step, self.steps_per_epoch)
                for x in self._batches(epoch, first):
                    lr = self.optimizer.param_groups[0]["lr"]
                    log_next = (self.step + 1) % cfg.log_every == 0 or self.step + 1 >= end
                    loss, gnorm, ok = self._train_step(x, measure_norm=log_next)
                    window.add(loss, gnorm, ok, x.shape[0] * self.info.world_size)
                    bar.update(1)
                    self._after_step(end, epoch, lr, window, bar)
                    if self.step >= end:
                        break
        finally:
            checks.restore()
            bar.close()
            if self._logger is not None:
                self._logger.close()
                self._logger = None
        return self.history

    def evaluate(self, data: Tensor | Dataset | None = None, use_ema: bool = True) -> dict[str, float]:
        """Mean NLL (nats per sample) and bits/dim on ``data`` (default: the test set).

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

    def sample(self, n: int, temperature: float = 1.0, seed: int | None = None) -> Tensor:
        """``n`` samples of the (EMA) model; with ``seed`` the same noise every call."""
        model = self.eval_model
        was_training = model.training
        model.eval()
        ctx = self._isolated_rng(seed) if seed is not None else contextlib.nullcontext()
        kwargs = {}
        if temperature != 1.0 or _accepts(model.sample, "temperature"):
            kwargs["temperature"] = temperature
        try:
            with ctx, torch.no_grad():
                return model.sample(n, **kwargs)
        finally:
            model.train(was_training)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (see :meth:`load_state_dict`)."""
        return {
            "format": "flowlab-checkpoint/1",
            "step": self.step,
            "bad_steps": self.bad_steps,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "rng": self._gather_rng(),
            "world_size": self.info.world_size,
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            if state.get("ema") is None:
                warnings.warn("the checkpoint has no EMA weights; the EMA restarts from the model")
                self.ema = make_ema(self.model, self.config.ema_decay)
            else:
                self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])
        self.bad_steps = int(state.get("bad_steps", 0))
        states = state.get("rng") or []
        if len(states) == self.info.world_size:
            set_rng_state(states[self.info.rank])
        else:
            warnings.warn(
                f"the checkpoint was written by {len(states)} process(es), this run has "
                f"{self.info.world_size}: random streams restart from the seed, so the "
                "continuation is not bit-for-bit identical"
            )
            _seed_everything(self.config.seed + 7919 * self.step + self.info.rank)

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Write the checkpoint atomically (rank 0 only; all ranks must call it)."""
        state = self.state_dict()  # collective: gathers every rank's random state
        if not self.info.is_main:
            return None
        if path is None:
            if self.run_dir is None:
                return None
            path = self.run_dir / CHECKPOINT
        return save_checkpoint(state, path)

    # ------------------------------------------------------------------ internals
    def prepare(self) -> None:
        """Check the run folder, resume, initialise data-dependent layers, wrap the model for
        DDP and ``torch.compile``.  :meth:`fit` calls it; call it first to catch setup errors
        (an existing run folder, a missing checkpoint) before any training."""
        if self._prepared:
            return
        cfg = self.config
        checkpoint = None
        if self.run_dir is not None:
            self._check_run_dir()
            if cfg.resume:
                checkpoint = load_checkpoint(self.run_dir / CHECKPOINT, map_location=self.device)
        elif cfg.resume:
            raise ValueError("resume needs a run_dir holding the checkpoint")
        _seed_everything(cfg.seed + self.info.rank)
        _check_finite_data(self.train_data, "training")
        if self.test_data is not None:
            _check_finite_data(self.test_data, "test")

        # One gradient-free forward pass initialises data-dependent layers (ActNorm); DDP then
        # copies rank 0's parameters and buffers to every process.  On resume the checkpoint
        # overwrites whatever it set.
        with self._isolated_rng(), torch.no_grad():
            self.loss_module(next(self._batches(0, 0)))
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
        if self.info.is_main:
            if self.run_dir is not None:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                import yaml

                (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
        self._barrier()
        self._start_time = time.perf_counter()
        self._prepared = True

    def _check_run_dir(self) -> None:
        cfg = self.config
        assert self.run_dir is not None
        found = [name for name in _RUN_FILES if (self.run_dir / name).exists()]
        samples = self.run_dir / "samples"
        if cfg.resume:
            if not (self.run_dir / CHECKPOINT).is_file():
                raise FileNotFoundError(
                    f"nothing to resume: {str(self.run_dir / CHECKPOINT)!r} does not exist "
                    "(drop --resume to start a new run there)"
                )
        elif found or (samples.is_dir() and any(samples.iterdir())):
            if not cfg.overwrite:
                raise RunDirExistsError(
                    f"the run folder {str(self.run_dir)!r} already holds results "
                    f"({', '.join(found) or 'samples/'}). Pass --resume to continue that run, "
                    "--overwrite to delete its results and start over, or choose another "
                    "--run-dir."
                )
            self._barrier()  # every rank has looked before rank 0 deletes
            if self.info.is_main:
                for name in _RUN_FILES:
                    (self.run_dir / name).unlink(missing_ok=True)
                for folder in ("samples", "tb"):
                    shutil.rmtree(self.run_dir / folder, ignore_errors=True)
        self._barrier()

    def _batches(self, epoch: int, first: int) -> Iterator[Tensor]:
        """The batches ``first, first+1, ...`` of ``epoch`` for this process."""
        self.sampler.set_epoch(epoch)
        order = torch.tensor(list(self.sampler), dtype=torch.long)
        b = self.local_batch
        chunks = [order[k * b : (k + 1) * b] for k in range(first, self.steps_per_epoch)]
        if isinstance(self.train_data, Tensor):
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
            dtype = self.dtype if x.is_floating_point() else None
            yield x.to(device=self.device, dtype=dtype, non_blocking=True)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.config.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _train_step(self, x: Tensor, measure_norm: bool = True) -> tuple[float, float, bool]:
        """One optimisation step; returns the (global mean) loss, the gradient norm (NaN when
        it was not measured) and whether the step was taken.

        The gradient norm is needed every step for clipping; without clipping it is measured
        only when asked (``measure_norm``, on logging steps), and the other steps check the
        gradients for NaN/inf with one fused pass (PyTorch's AMP check, several times cheaper
        than 48 separate norms on a small model).
        """
        cfg = self.config
        if not self.model.training:
            self.model.train()
        with self._autocast():
            nll = self._net(x)
        loss = nll.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self._params if p.grad is not None]
        flag_only = cfg.grad_clip <= 0 and not measure_norm and self._flag_check
        if cfg.grad_clip > 0:
            health = torch.nn.utils.clip_grad_norm_(self._params, cfg.grad_clip)
        elif not flag_only:
            health = torch.nn.utils.get_total_norm(grads)
        else:
            # found_inf becomes 1 if any gradient holds NaN/inf; the "unscaling" multiplies
            # by one and leaves the gradients as they are.
            health = torch.zeros((), device=loss.device)
            torch._amp_foreach_non_finite_check_and_unscale_(grads, health, self._one)
        # One synchronisation per step: the loss (averaged over processes) and the gradient
        # norm or NaN/inf flag (identical on all processes after DDP's all-reduce) decide
        # whether to step.
        stats = torch.stack([loss.detach().float(), health.detach().float().to(loss.device)])
        if self.info.distributed:
            dist.all_reduce(stats)
            stats[0] /= self.info.world_size
            stats[1] /= self.info.world_size
        loss_value, health_value = stats.tolist()
        gnorm_value = math.nan if flag_only else health_value
        healthy_grads = health_value == 0.0 if flag_only else math.isfinite(health_value)
        ok = math.isfinite(loss_value) and healthy_grads
        self.step += 1
        if ok:
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            self.bad_steps = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.bad_steps += 1
            if self.info.is_main:
                if flag_only:
                    grad_state = "finite" if healthy_grads else "NaN/inf found"
                else:
                    grad_state = f"norm {gnorm_value}"
                warnings.warn(
                    f"step {self.step}: non-finite loss ({loss_value}) or gradients "
                    f"({grad_state}); the step was skipped ({self.bad_steps} in a row)",
                    RuntimeWarning, stacklevel=2,
                )
            if self.bad_steps >= cfg.max_bad_steps:
                raise TrainingDiverged(self._divergence_message(x, loss_value))
        self.scheduler.step()
        return loss_value, gnorm_value, ok

    def _divergence_message(self, x: Tensor, loss_value: float) -> str:
        cfg = self.config
        causes = [
            f"the learning rate is too high (lr={cfg.lr:g}): lower --lr, lengthen "
            f"--warmup-steps or keep --grad-clip on (now {cfg.grad_clip:g})",
            "an unbounded scale in an affine coupling: exp(s) overflows unless s is bounded "
            "(use a bounded/soft-clamped scale, or additive couplings)",
            "bad data: NaN/inf values, or images that were not dequantized and rescaled",
        ]
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            causes.insert(0, causes.pop(2).replace("bad data", "bad data (this batch has NaN/inf)"))
        kept = (
            f"The last good checkpoint is kept in {str(self.run_dir / CHECKPOINT)!r}."
            if self.run_dir is not None and (self.run_dir / CHECKPOINT).exists()
            else "No checkpoint had been written yet."
        )
        lines = "\n".join(f"  {i + 1}. {c}" for i, c in enumerate(causes))
        return (
            f"training stopped at step {self.step}: the loss or gradient was non-finite for "
            f"{self.bad_steps} consecutive steps (last loss {loss_value}). Likely causes, most "
            f"likely first:\n{lines}\n{kept}"
        )

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
            bar.set_postfix(
                loss=f"{row['loss']:.3f}", bpd=f"{row['bits_per_dim']:.3f}",
                samples_s=f"{row['samples_per_s']:.0f}", refresh=False,
            )
            window.reset()
        if self.test_data is not None and (s % cfg.eval_every == 0 or s == cfg.steps):
            metrics = self.evaluate()
            self._record({
                "step": s, "epoch": epoch, "test_nll": metrics["nll"],
                "test_bits_per_dim": metrics["bits_per_dim"],
                "time_s": time.perf_counter() - self._start_time,
            })
        if cfg.sample_every and (s % cfg.sample_every == 0 or s == cfg.steps):
            self._write_samples()
        # Never checkpoint in the middle of a run of failed steps: the file on disk stays the
        # last state that was reached by a healthy step.
        if (s % cfg.checkpoint_every == 0 or last) and self.bad_steps == 0:
            self.save_checkpoint()

    def _record(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self._logger is not None:
            self._logger.log(row)

    def _write_samples(self) -> None:
        if not self.info.is_main or self.run_dir is None or not hasattr(self.eval_model, "sample"):
            return
        x = self.sample(self.config.n_samples, seed=self.config.seed)
        self._save_samples(x, self.run_dir / "samples" / f"step_{self.step:07d}.png")

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


class _InputChecksOff:
    """Switches off the per-call NaN/inf check of every :class:`~flowlab.Flow` in ``model``
    for the training steps, and :meth:`restore` switches it back.

    The check reads the whole batch (a host-device synchronisation on a GPU) and is
    redundant here: the step's loss is checked anyway, a non-finite one skips the step, and
    the divergence message says whether the batch held NaN/inf.  Tensor training data is
    checked once, up front, in :meth:`Trainer.prepare`.
    """

    def __init__(self, model: nn.Module) -> None:
        from ..flow import Flow

        self._flows = [m for m in model.modules() if isinstance(m, Flow) and m.validate]
        for flow in self._flows:
            flow.validate = False

    def restore(self) -> None:
        for flow in self._flows:
            flow.validate = True


class _Window:
    """Running sums of the steps since the last logged row."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss = self.gnorm = 0.0
        self.good = self.skipped = self.samples = self.norms = 0
        self.start = time.perf_counter()

    def add(self, loss: float, gnorm: float, ok: bool, samples: int) -> None:
        self.samples += samples
        if ok:
            self.loss += loss
            self.good += 1
            if not math.isnan(gnorm):  # measured this step
                self.gnorm += gnorm
                self.norms += 1
        else:
            self.skipped += 1

    def mean_loss(self) -> float:
        return self.loss / self.good if self.good else math.nan

    def mean_gnorm(self) -> float:
        """Mean over the healthy steps whose norm was measured: every step with gradient
        clipping, the logged step alone without."""
        return self.gnorm / self.norms if self.norms else math.nan


def _check_finite_data(data: Tensor | Dataset, name: str) -> None:
    """One pass over in-memory tensor data: NaN/inf would otherwise only show up as skipped
    steps (datasets are checked batch by batch through the loss)."""
    if isinstance(data, Tensor) and data.is_floating_point():
        check_finite(data, name=f"the {name} data", layer="Trainer")


def _accepts(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
