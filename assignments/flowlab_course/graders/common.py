"""Small pieces every grader uses: fresh random inputs, building the student's objects."""

from __future__ import annotations

import os
from typing import Any, Callable

import torch
from torch import Tensor

from .errors import GradingFailure

__all__ = ["fresh_generator", "randn", "build", "run_student", "set_param", "reference"]


def fresh_generator() -> torch.Generator:
    """A generator seeded from the OS: new inputs at every grading run."""
    gen = torch.Generator()
    gen.manual_seed(int.from_bytes(os.urandom(6), "little"))
    return gen


def randn(gen: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    """Standard normal float64 batch (graders work in float64 so that tolerances are tight)."""
    return scale * torch.randn(*shape, generator=gen, dtype=torch.float64)


def build(factory: Callable[..., Any], *args: Any, part: str, what: str | None = None, **kwargs: Any) -> Any:
    """Call the student's constructor; a failure becomes a message naming the call."""
    name = what or getattr(factory, "__name__", "the constructor")
    try:
        obj = factory(*args, **kwargs)
    except NotImplementedError:
        raise GradingFailure(f"{name} is not implemented yet (NotImplementedError).", part) from None
    except GradingFailure:
        raise
    except Exception as err:
        raise GradingFailure(f"{name}(...) raised {type(err).__name__}: {err}", part) from None
    if isinstance(obj, torch.nn.Module):
        obj = obj.double()
    return obj


def run_student(fn: Callable[..., Any], *args: Any, part: str, what: str) -> Any:
    """Call a student's function; its exceptions become a one-line message."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise GradingFailure(f"{what} is not implemented yet (NotImplementedError).", part) from None
    except GradingFailure:
        raise
    except Exception as err:
        raise GradingFailure(f"{what} raised {type(err).__name__}: {err}", part) from None


def set_param(module: torch.nn.Module, name: str, value: Tensor, part: str, layout: str) -> None:
    """Copy ``value`` into ``module.<name>`` (the documented hook), or explain the convention."""
    target = getattr(module, name, None)
    if not isinstance(target, Tensor):
        raise GradingFailure(
            f"{type(module).__name__} has no tensor attribute `{name}`. The instructions ask you "
            f"to store {layout} in self.{name}, so that the tests can set it.",
            part,
        )
    if tuple(target.shape) != tuple(value.shape):
        raise GradingFailure(
            f"{type(module).__name__}.{name} has shape {tuple(target.shape)}, expected "
            f"{tuple(value.shape)} ({layout}).",
            part,
        )
    with torch.no_grad():
        target.copy_(value.to(dtype=target.dtype, device=target.device))


def reference(factory: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Build a flowlab reference object directly in float64 (no ``.double()`` round trip)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return factory(*args, **kwargs)
    finally:
        torch.set_default_dtype(previous)
