"""The ``flowlab`` command: ``train``, ``sample`` and ``evaluate``.

Examples::

    flowlab train                                  # multi-scale RealNVP on the 8x8 digits
    flowlab train --data moons --steps 2000        # a toy 2-D set
    flowlab train --config run.yaml --lr 3e-4      # a YAML/TOML file, flags win over it
    flowlab train --run-dir runs/digits --resume   # continue from the last checkpoint
    torchrun --nproc_per_node 4 -m flowlab train --data cifar10 --data-root ~/data --bf16
    flowlab sample --run-dir runs/digits -n 64 --temperature 0.8
    flowlab evaluate --run-dir runs/digits

Exit codes: 0 success, 1 training stopped (diverged), 2 bad flags/config/data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "build_parser"]

EXIT_DIVERGED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with the flags, the config file, the data or the run folder (exit code 2)."""


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`~flowlab.train.TrainConfig` field, help text from the field."""
    import yaml

    from .train.config import TrainConfig

    groups = {
        "data": "what to train", "steps": "optimisation", "device": "hardware",
        "run_dir": "bookkeeping",
    }
    group: Any = parser
    for f in dataclasses.fields(TrainConfig):
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
            kw["type"] = yaml.safe_load
            kw["metavar"] = "YAML"
        elif isinstance(default, int):
            kw["type"] = int
        elif isinstance(default, float):
            kw["type"] = float
        else:
            kw["metavar"] = f.name.upper()
        group.add_argument(_flag(f.name), **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowlab",
        description="Train, sample and evaluate normalizing flows (flowlab).",
        epilog="Run 'flowlab COMMAND --help' for the flags of each command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser(
        "train",
        help="train a flow by maximum likelihood",
        description=(
            "Train a flow by maximum likelihood. Settings come from the defaults, then "
            "--config FILE, then the flags given here. Launch with torchrun for several "
            "processes; the command is the same. The run folder receives checkpoint.pt, "
            "metrics.csv, config.yaml and samples/*.png."
        ),
    )
    train.add_argument(
        "--config", metavar="FILE",
        help="YAML (.yaml/.yml) or TOML (.toml) file of settings; the names are those of the "
        "flags with underscores (batch_size: 64)",
    )
    _add_config_flags(train)

    for name, text in (
        ("sample", "draw samples from a trained run and save them as a PNG"),
        ("evaluate", "report the test negative log-likelihood and bits/dim of a trained run"),
    ):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("--run-dir", required=True, metavar="DIR",
                       help="run folder written by 'flowlab train' (holds checkpoint.pt)")
        p.add_argument("--checkpoint", metavar="FILE",
                       help="a checkpoint file to use instead of DIR/checkpoint.pt")
        p.add_argument("--no-ema", dest="ema", action="store_false",
                       help="use the trained weights even if the run kept an EMA of them")
        p.add_argument("--device", default="auto",
                       help="'auto' (CUDA if available, else CPU), 'cpu', 'cuda', 'cuda:1' "
                       "(default: auto)")
        p.add_argument("--data-root", metavar="DIR",
                       help="folder of a torchvision data set, if it moved since training")
        if name == "sample":
            p.add_argument("-n", "--num", type=int, default=64,
                           help="number of samples (default: 64)")
            p.add_argument("--temperature", type=float, default=1.0,
                           help="scale of the latent noise; < 1 gives cleaner, less varied "
                           "samples (default: 1.0)")
            p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
            p.add_argument("--out", metavar="FILE",
                           help="PNG to write (default: DIR/samples/sample.png)")
            p.add_argument("--save-tensor", metavar="FILE",
                           help="also save the samples as a tensor with torch.save")
        else:
            p.add_argument("--split", choices=("test", "train"), default="test",
                           help="which split to evaluate (default: test)")
            p.add_argument("--batch-size", type=int, default=1000,
                           help="evaluation batch size (default: 1000)")
            p.add_argument("--seed", type=int, default=0,
                           help="seed of the dequantization noise (default: 0)")
            p.add_argument("--json", action="store_true",
                           help="print the result as one JSON object")
    return parser


# ---------------------------------------------------------------------------------- train
def _train_config(args: argparse.Namespace) -> Any:
    from .train.checkpoint import load_checkpoint
    from .train.config import TrainConfig, load_config_file

    given = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
    values: dict[str, Any] = {}
    if given.get("resume"):
        # Continue with the settings the run was started with; flags may change some of them
        # (e.g. --steps to train longer).
        run_dir = given.get("run_dir")
        if run_dir is None:
            raise UsageError("--resume needs --run-dir, the folder of the run to continue")
        checkpoint = Path(run_dir) / "checkpoint.pt"
        if not checkpoint.is_file():
            raise UsageError(f"nothing to resume: {str(checkpoint)!r} does not exist")
        values.update(load_checkpoint(checkpoint)["config"])
        values["overwrite"] = False
    if args.config:
        values.update(load_config_file(args.config))
    values.update(given)
    cfg = TrainConfig.from_dict(values)
    if cfg.run_dir is None:
        cfg = cfg.updated({"run_dir": f"runs/{cfg.data}"})
    return cfg


def _image_sampler(num_levels: int) -> Any:
    """Save samples of an image model as a grid with the true level scale."""

    def save(x: Any, path: Path) -> None:
        from .plots.images import sample_grid

        path.parent.mkdir(parents=True, exist_ok=True)
        fig = sample_grid(x, nrow=8, num_levels=num_levels, title=path.stem)
        fig.savefig(path)

    return save


def _cmd_train(args: argparse.Namespace) -> int:
    from .train import Trainer, TrainingDiverged, teardown
    from .train.distributed import setup
    from .train.recipes import build_data, build_model
    from .train.trainer import _seed_everything

    try:
        cfg = _train_config(args)
        info = setup(cfg.device)
        _seed_everything(cfg.seed)
        data = build_data(cfg)
        model = build_model(cfg, data)
        trainer = Trainer(
            model, data.train, data.test, cfg,
            save_samples_fn=_image_sampler(data.num_levels) if data.is_image else None,
        )
        trainer.prepare()
    except (UsageError, ValueError, TypeError, FileNotFoundError, FileExistsError,
            ImportError) as err:
        teardown()
        return _fail("train", err, EXIT_USAGE)
    try:
        if info.is_main:
            n_params = sum(p.numel() for p in model.parameters())
            print(f"flowlab train: {cfg.data} -> {type(model).__name__} ({n_params:,} "
                  f"parameters), {cfg.steps} steps, {info.world_size} process(es) on "
                  f"{info.device}; results in {cfg.run_dir}", flush=True)
        trainer.fit()
        result = trainer.evaluate()
        if info.is_main:
            print(f"flowlab train: done. test NLL {result['nll']:.4f} nats, "
                  f"{result['bits_per_dim']:.4f} bits/dim", flush=True)
        return 0
    except TrainingDiverged as err:
        return _fail("train", err, EXIT_DIVERGED, rank=info.rank)
    except KeyboardInterrupt:
        print("flowlab train: interrupted; continue with --resume from the last checkpoint",
              file=sys.stderr)
        return 130
    finally:
        teardown()


# ------------------------------------------------------------------------- sample/evaluate
def _load_run(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Config, data and the trained (EMA) model of a run folder."""
    from .train.checkpoint import load_checkpoint
    from .train.config import TrainConfig
    from .train.distributed import resolve_device
    from .train.recipes import build_data, build_model

    path = Path(args.checkpoint) if args.checkpoint else Path(args.run_dir) / "checkpoint.pt"
    if not path.is_file():
        raise UsageError(f"no checkpoint at {str(path)!r}: train first with "
                         f"'flowlab train --run-dir {args.run_dir}'")
    state = load_checkpoint(path)
    values = dict(state["config"])
    if args.data_root:
        values["data_root"] = args.data_root
    cfg = TrainConfig.from_dict(values)
    data = build_data(cfg)
    model = build_model(cfg, data)
    weights = state["model"]
    if args.ema and state.get("ema"):
        weights = {k[len("module."):]: v for k, v in state["ema"].items()
                   if k.startswith("module.")}
    model.load_state_dict(weights)
    device = resolve_device(args.device)
    return cfg, data, model.to(device).eval()


def _cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from .train.samples import save_samples

    try:
        if args.num <= 0:
            raise UsageError(f"-n must be positive, got {args.num}")
        if args.temperature <= 0:
            raise UsageError(f"--temperature must be positive, got {args.temperature}")
        cfg, data, model = _load_run(args)
    except (UsageError, ValueError, FileNotFoundError, ImportError) as err:
        return _fail("sample", err, EXIT_USAGE)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        x = model.sample(args.num, temperature=args.temperature)
    out = Path(args.out) if args.out else Path(args.run_dir) / "samples" / "sample.png"
    if data.is_image:
        _image_sampler(data.num_levels)(x, out)
    else:
        save_samples(x, out, title=f"{cfg.data}, T={args.temperature:g}")
    if args.save_tensor:
        torch.save(x.cpu(), args.save_tensor)
    print(f"flowlab sample: {args.num} samples written to {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .train.evaluate import evaluate_nll

    try:
        if args.batch_size <= 0:
            raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
        cfg, data, model = _load_run(args)
    except (UsageError, ValueError, FileNotFoundError, ImportError) as err:
        return _fail("evaluate", err, EXIT_USAGE)
    device = next(model.parameters()).device
    torch.manual_seed(args.seed)
    result = evaluate_nll(model, data.test if args.split == "test" else data.train,
                          batch_size=args.batch_size, device=device)
    result = {"data": cfg.data, "split": args.split, "ema": bool(args.ema), **result}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"flowlab evaluate: {cfg.data} ({args.split}): NLL {result['nll']:.4f} nats per "
              f"sample, {result['bits_per_dim']:.4f} bits/dim")
    return 0


# ---------------------------------------------------------------------------------- main
def _fail(command: str, err: BaseException, code: int, rank: int = 0) -> int:
    if rank == 0:
        print(f"flowlab {command}: error: {err}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowlab`` console script (and ``python -m flowlab``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = {"train": _cmd_train, "sample": _cmd_sample, "evaluate": _cmd_evaluate}
    return command[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
