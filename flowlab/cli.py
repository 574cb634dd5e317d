"""The ``flowlab`` command: ``train``, ``sample`` and ``evaluate``.

Examples::

    flowlab train                                  # multi-scale RealNVP on the 8x8 digits
    flowlab train --data moons --steps 2000        # a toy 2-D set
    flowlab train --config run.yaml --lr 3e-4      # a YAML/TOML file, flags win over it
    flowlab train --run-dir runs/digits --resume   # continue from the last checkpoint
    torchrun --nproc_per_node 4 -m flowlab train --data cifar10 --data-root ~/data --bf16
    flowlab sample --run-dir runs/digits -n 64 --temperature 0.8
    flowlab evaluate --run-dir runs/digits         # test bits/dim next to the baselines

In Python, ``flowlab.train.load_run("runs/digits")`` gives the trained model in one call.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_DIVERGED", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_DIVERGED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

EXIT_CODES = (
    "Exit codes: 0 success; 1 training stopped because it diverged (non-finite losses); "
    "2 a usage problem: bad flags, config file, data or model arguments, a run folder that "
    "already holds results, a missing or damaged checkpoint, or a file that cannot be "
    "written (read-only folder, full disk; what could be saved is written to a fallback "
    "path that the message names); 130 interrupted by Ctrl-C (the run is saved first)."
)


class UsageError(Exception):
    """A problem with the flags, the config file, the data or the run folder (exit code 2)."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_fields(parser: argparse.ArgumentParser, cls: Any, groups: dict[str, str]) -> None:
    """One flag per dataclass field of ``cls``, help text from the field."""
    group: Any = parser
    for f in dataclasses.fields(cls):
        if f.name in groups:
            group = parser.add_argument_group(groups[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f.metadata["help"] + f" (default: {default})"
        # SUPPRESS: only flags given on the command line appear in the namespace, so they
        # override the config file and nothing else does.
        kw: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text, "dest": f.name}
        if isinstance(default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, dict):
            kw["type"] = _yaml_value(_flag(f.name))
            kw["metavar"] = "YAML"
        elif isinstance(default, int):
            kw["type"] = int
        elif isinstance(default, float):
            kw["type"] = float
        else:
            kw["metavar"] = f.name.upper()
        if "choices" in f.metadata:  # e.g. --model: the names of flowlab.models.registry
            kw["choices"] = f.metadata["choices"]
            kw.pop("metavar", None)
        group.add_argument(_flag(f.name), **kw)


def _yaml_value(flag: str) -> Any:
    """An argparse ``type`` reading a YAML value; malformed YAML is a usage error (exit 2)
    naming the line and column, not a traceback."""

    def parse(text: str) -> Any:
        from .train.config import parse_yaml

        try:
            return parse_yaml(text, "the value")
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{err} (got {text!r})") from None

    parse.__name__ = flag  # argparse names the type in some messages
    return parse


def build_parser() -> argparse.ArgumentParser:
    from .train.config import TrainConfig
    from .train.recipes import Recipe

    parser = argparse.ArgumentParser(
        prog="flowlab",
        description="Train, sample and evaluate normalizing flows (flowlab).",
        epilog="Run 'flowlab COMMAND --help' for the flags of each command. " + EXIT_CODES,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser(
        "train",
        help="train a flow by maximum likelihood",
        description=(
            "Train a flow by maximum likelihood. Settings come from the defaults, then "
            "--config FILE, then the flags given here. A validation split is held out of the "
            "training data for model selection (best.pt) and early stopping (--patience); the "
            "test set is evaluated once, at the end, on the best-on-validation weights "
            "(test.json). Launch with torchrun for several processes; the command is the "
            "same. The run folder receives last.pt, previous.pt, best.pt, metrics.csv, "
            "config.yaml, split.json, test.json and samples/*.png. Small models train "
            "fastest on one thread (the default for them, see --threads)."
        ),
        epilog=EXIT_CODES,
    )
    train.add_argument(
        "--config", metavar="FILE",
        help="YAML (.yaml/.yml) or TOML (.toml) file of settings; the names are those of the "
        "flags with underscores (batch_size: 64)",
    )
    _add_fields(train, Recipe, {"data": "what to train (the recipe)"})
    _add_fields(train, TrainConfig, {
        "steps": "optimisation", "device": "hardware", "run_dir": "bookkeeping",
    })

    for name, text in (
        ("sample", "draw samples from a trained run and save them as a PNG"),
        ("evaluate", "report the test negative log-likelihood and bits/dim of a trained run, "
                     "next to the baselines (uniform, per-pixel histogram fit on train)"),
    ):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                           epilog=EXIT_CODES)
        p.add_argument("--run-dir", required=True, metavar="DIR",
                       help="run folder written by 'flowlab train'")
        p.add_argument("--checkpoint", metavar="WHICH", default="best",
                       help="'best' (best on validation), 'last', 'previous' or a checkpoint "
                       "file (default: best)")
        p.add_argument("--no-ema", dest="ema", action="store_false",
                       help="use the trained weights even if the run kept an EMA of them")
        p.add_argument("--device", default="auto",
                       help="'auto' (CUDA if available, else CPU), 'cpu', 'cuda', 'cuda:1' "
                       "(default: auto)")
        p.add_argument("--data-root", metavar="DIR",
                       help="folder of a torchvision data set, if it moved since training")
        p.add_argument("--threads", type=int, default=0,
                       help="torch threads (default 0: automatic, see 'flowlab train --help')")
        if name == "sample":
            p.add_argument("-n", "--num", type=int, default=64,
                           help="number of samples (default: 64)")
            p.add_argument("--temperature", type=float, default=1.0,
                           help="scale of the latent noise, a finite number >= 0; < 1 gives "
                           "cleaner, less varied samples; draws that are not finite (inf/NaN) "
                           "are reported on stderr (default: 1.0)")
            p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
            p.add_argument("--out", metavar="FILE",
                           help="PNG to write (default: DIR/samples/sample.png)")
            p.add_argument("--save-tensor", metavar="FILE",
                           help="also save the samples as a tensor with torch.save")
        else:
            p.add_argument("--split", choices=("test", "val", "train"), default="test",
                           help="which split to evaluate: test, val (the run's validation "
                           "split) or train (the rest of the training data) (default: test)")
            p.add_argument("--batch-size", type=int, default=1000,
                           help="evaluation batch size (default: 1000)")
            p.add_argument("--importance-samples", type=int, default=1,
                           help="dequantization draws per image combined inside the log "
                           "(importance-weighted bound; default 1: the plain bound)")
            p.add_argument("--seed", type=int, default=0,
                           help="seed of the dequantization noise (default: 0)")
            p.add_argument("--json", action="store_true",
                           help="print the result as one JSON object")
    return parser


# ---------------------------------------------------------------------------------- train
def _train_settings(args: argparse.Namespace) -> tuple[Any, Any]:
    """The recipe and loop settings: the resumed run's, then the config file, then flags.

    On resume the checkpoint is located and checked by
    :func:`flowlab.train.runfolder.resume_checkpoint`, the function the trainer uses too;
    the trainer refuses changed optimisation settings
    (:func:`flowlab.train.schedule.check_resume_settings`)."""
    from .train.config import TrainConfig, load_config_file
    from .train.load import run_settings
    from .train.recipes import Recipe, split_settings
    from .train.runfolder import resume_checkpoint

    given = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    values: dict[str, Any] = {}
    if given.get("resume") or given.get("resume_from"):
        # Continue with the settings the run was started with; flags may change some of them
        # (e.g. --steps to train longer).
        _, state = resume_checkpoint(given.get("run_dir"), given.get("resume_from"))
        recipe, loop = run_settings(state)
        values.update(recipe.to_dict())
        values.update(loop.to_dict())
        # How the stored run was started is not how this one starts: a --resume-from of an
        # earlier resume must not be read again (this resume's own flags are in `given`).
        values.update(overwrite=False, resume=True, resume_from=None)
    if args.config:
        values.update(load_config_file(args.config))
    values.update(given)
    recipe_values, loop_values = split_settings(values)
    recipe = Recipe.from_dict(recipe_values)
    cfg = TrainConfig.from_dict(loop_values)
    if cfg.run_dir is None:
        cfg = cfg.updated({"run_dir": f"runs/{recipe.data}"})
    return recipe, cfg


def _image_sampler(num_levels: int) -> Any:
    """Save samples of an image model as a grid with the true level scale."""

    def save(x: Any, path: Path) -> None:
        from .plots.images import sample_grid

        path.parent.mkdir(parents=True, exist_ok=True)
        fig = sample_grid(x, nrow=8, num_levels=num_levels, title=path.stem)
        fig.savefig(path)

    return save


def _baselines(data: Any, test: Any) -> dict[str, float]:
    """Bits/dim (images) or NLL (vectors) of the baselines, fit on train, scored on ``test``."""
    if data.is_image:
        from .metrics import baselines

        return baselines(data.train, test, data.num_levels)
    from .train.evaluate import gaussian_baseline_nll, nll_to_bits_per_dim

    nll = gaussian_baseline_nll(data.train, test)
    return {"gaussian (fit on train)": nll_to_bits_per_dim(nll, int(test[0].numel()))}


def _format_baselines(base: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in base.items())


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .train import (
        RunFolderError,
        Trainer,
        TrainingDiverged,
        TrainingInterrupted,
        seed_everything,
        teardown,
    )
    from .train.distributed import setup
    from .train.recipes import build_data, build_model, choose_threads

    info = None
    try:
        recipe, cfg = _train_settings(args)
        info = setup(cfg.device)
        seed_everything(cfg.seed)
        data = build_data(recipe, seed=cfg.seed)
        model = build_model(recipe, data)
        threads = choose_threads(recipe.threads, model, data.event_shape)
        torch.set_num_threads(threads)
        trainer = Trainer(
            model, data.train_set, data.test_set, cfg, labels=data.train_labels,
            save_samples_fn=_image_sampler(data.num_levels) if data.is_image else None,
            metadata={"recipe": recipe.to_dict()},
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.prepare()
        for w in caught:
            if info.is_main:
                print(f"flowlab train: {w.message}", file=sys.stderr)
    except KeyboardInterrupt:
        teardown()
        print("flowlab train: interrupted before training started; nothing was saved",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, ValueError, TypeError, OSError, ImportError) as err:
        teardown()
        return _fail("train", err, EXIT_USAGE)
    try:
        if info.is_main:
            n_params = sum(p.numel() for p in model.parameters())
            held = (f", {len(trainer.val_data)} held out for validation"
                    if trainer.val_data is not None else ", no validation split")
            print(f"flowlab train: {recipe.data} -> {type(model).__name__} ({n_params:,} "
                  f"parameters), {len(trainer.train_data)} training samples{held}; "
                  f"{cfg.steps} steps, {info.world_size} process(es) on {info.device}, "
                  f"{threads} thread(s); results in {cfg.run_dir}", flush=True)
        trainer.fit()
        if info.is_main:
            _report_end(trainer, data)
        return EXIT_OK
    except TrainingDiverged as err:
        return _fail("train", err, EXIT_DIVERGED, rank=info.rank)
    except TrainingInterrupted as err:
        if info.is_main:
            if err.checkpoint is not None and Path(err.checkpoint).is_file():
                resume = (f"flowlab train --run-dir {cfg.run_dir} --resume"
                          if Path(err.checkpoint).parent == Path(cfg.run_dir)
                          else f"flowlab train --run-dir {cfg.run_dir} --resume-from "
                               f"{err.checkpoint}")
                print(f"flowlab train: interrupted at step {err.step}; step "
                      f"{err.saved_step} is saved in {err.checkpoint}. Continue with: {resume}",
                      file=sys.stderr)
            else:
                print(f"flowlab train: interrupted at step {err.step}; no checkpoint had been "
                      "written, so there is nothing to resume (start the run again)",
                      file=sys.stderr)
        return EXIT_INTERRUPTED
    except (RunFolderError, OSError) as err:
        return _fail("train", err, EXIT_USAGE, rank=info.rank)
    finally:
        teardown()


def _report_end(trainer: Any, data: Any) -> None:
    result = trainer.test_result
    if trainer.best_step is not None:
        stop = " (stopped early)" if trainer.stopped_early else ""
        print(f"flowlab train: done at step {trainer.step}{stop}; best validation "
              f"{trainer.best_score:.4f} bits/dim at step {trainer.best_step} (best.pt)",
              flush=True)
    if result is None:
        return
    base = _baselines(data, data.test)
    print(f"flowlab train: test NLL {result['nll']:.4f} nats, {result['bits_per_dim']:.4f} "
          f"bits/dim (weights of step {result['selected_step']}, selected on "
          f"{result['selected_on']}); baselines (bits/dim): {_format_baselines(base)}",
          flush=True)


# ------------------------------------------------------------------------- sample/evaluate
def _load(args: argparse.Namespace) -> Any:
    import torch

    from .train.distributed import resolve_device
    from .train.load import checkpoint_path, load_run
    from .train.recipes import choose_threads

    path = checkpoint_path(args.run_dir, args.checkpoint)
    if not path.is_file() and args.checkpoint in ("best", "last", "previous"):
        raise UsageError(f"no checkpoint at {str(path)!r}: train first with "
                         f"'flowlab train --run-dir {args.run_dir}'")
    run = load_run(args.run_dir, args.checkpoint, use_ema=args.ema,
                   device=resolve_device(args.device), data_root=args.data_root)
    torch.set_num_threads(choose_threads(args.threads, run.model, run.data.event_shape))
    return run


def _write_or_rescue(write: Any, out: Path, what: str,
                     check: Any = None) -> tuple[Path, str | None]:
    """Write ``what`` to ``out``; if that fails, to the fallback folder (read back with
    ``check``).  Returns the path written and, on a fallback, the reason ``out`` failed."""
    from .train.checkpoint import as_os_error
    from .train.runfolder import describe_os_error, rescue

    try:
        write(out)
        return out, None
    except (OSError, RuntimeError) as caught:
        err = as_os_error(caught)
        if not isinstance(err, OSError):
            raise
        reason = describe_os_error(err)
    try:
        return rescue(write, out.name, check), reason
    except OSError as err2:
        raise UsageError(
            f"cannot write the {what} to {str(out)!r} ({reason}) nor to {err2}: nothing was "
            "saved"
        ) from err2


def _read_png(path: Path) -> None:
    from PIL import Image

    with Image.open(path) as image:
        image.load()


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from .distributions import check_temperature
    from .train.checkpoint import atomic_save
    from .train.samples import save_samples

    try:
        if args.num <= 0:
            raise UsageError(f"-n must be positive, got {args.num}")
        try:
            check_temperature(args.temperature)
        except ValueError as err:
            raise UsageError(f"--{err}") from None
        run = _load(args)
    except (UsageError, ValueError, OSError, ImportError) as err:
        return _fail("sample", err, EXIT_USAGE)
    torch.manual_seed(args.seed)
    # A conditional model samples at contexts from its data (the classes in turn, for labels).
    context = run.data.sample_context(args.num)
    kw = {} if context is None else {"context": context.to(next(run.model.parameters()))}
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = run.model.sample(args.num, temperature=args.temperature, **kw)
    for w in caught:  # e.g. draws that are not finite: said, never silent
        print(f"flowlab sample: warning: {w.message}", file=sys.stderr)
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples" / "sample.png"

    def write_png(path: Path) -> None:
        if run.data.is_image:
            _image_sampler(run.data.num_levels)(x, path)
        else:
            save_samples(x, path, title=f"{run.recipe.data}, T={args.temperature:g}")

    problems = []
    try:
        written, reason = _write_or_rescue(write_png, out, "sample image", check=_read_png)
        if reason:
            problems.append(f"cannot write {out} ({reason}); the samples were written to "
                            f"{written} instead")
        tensor_path = None
        if args.save_tensor:
            tensor_path, reason = _write_or_rescue(
                lambda p: atomic_save(x.cpu(), p), Path(args.save_tensor), "sample tensor",
                check=lambda p: torch.load(p, weights_only=True))
            if reason:
                problems.append(f"cannot write {args.save_tensor} ({reason}); the tensor was "
                                f"written to {tensor_path} instead")
    except UsageError as err:
        return _fail("sample", err, EXIT_USAGE)
    for text in problems:
        print(f"flowlab sample: error: {text}", file=sys.stderr)
    print(f"flowlab sample: {args.num} samples written to {written}"
          + (f" (tensor: {tensor_path})" if tensor_path else ""))
    return EXIT_USAGE if problems else EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .train.evaluate import evaluate_nll, inputs_of
    from .train.split import ValidationSplit

    try:
        if args.batch_size <= 0:
            raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
        if args.importance_samples <= 0:
            raise UsageError(
                f"--importance-samples must be positive, got {args.importance_samples}"
            )
        run = _load(args)
        data = run.data.test_set  # (x, c) pairs for data with a context
        if args.split != "test":
            if not run.state.get("split"):
                if args.split == "val":
                    raise UsageError("this run has no validation split (val_fraction was 0)")
                data = run.data.train_set
            else:
                split = ValidationSplit.from_dict(run.state["split"])
                train, val = split.apply(run.data.train_set)
                data = val if args.split == "val" else train
    except (UsageError, ValueError, OSError, ImportError) as err:
        return _fail("evaluate", err, EXIT_USAGE)
    device = next(run.model.parameters()).device
    torch.manual_seed(args.seed)
    result = evaluate_nll(run.model, data, batch_size=args.batch_size, device=device,
                          importance_samples=args.importance_samples)
    base = _baselines(run.data, inputs_of(data))
    result = {
        "data": run.recipe.data, "split": args.split, "checkpoint": str(run.checkpoint),
        "step": run.step, "ema": bool(args.ema), **result,
        "importance_samples": args.importance_samples, "baselines_bits_per_dim": base,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"flowlab evaluate: {run.recipe.data} ({args.split}, {run.checkpoint.name} at step "
              f"{run.step}): NLL {result['nll']:.4f} nats per sample, "
              f"{result['bits_per_dim']:.4f} bits/dim")
        print(f"flowlab evaluate: baselines (bits/dim): {_format_baselines(base)}")
    return EXIT_OK


# ---------------------------------------------------------------------------------- main
def _fail(command: str, err: BaseException, code: int, rank: int = 0) -> int:
    if rank == 0:
        text = str(err)
        if isinstance(err, KeyError):  # str() of a KeyError is only the key, quoted
            text = f"missing {text}"
        print(f"flowlab {command}: error: {text}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowlab`` console script (and ``python -m flowlab``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = {"train": _cmd_train, "sample": _cmd_sample, "evaluate": _cmd_evaluate}
    return command[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
