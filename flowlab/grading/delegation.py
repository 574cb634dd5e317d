r"""Detect a submission that hands a part it had to write over to flowlab's reference.

Two checks, both cheap:

* **static** — the student's class must not *subclass* a reference class of the part
  (``class AffineCoupling(flowlab.transforms.coupling.AffineCoupling)``), and a student's
  layer must not *contain* a reference layer as a sub-module;
* **dynamic** — while the student's code runs, :func:`sys.setprofile` watches every Python
  call; a call into a forbidden reference file (``flowlab/transforms/coupling.py`` ...) is
  delegation, whatever name or alias it was imported under.

Using the shared contract (``flowlab.transforms.base.Transform``, ``flowlab.checks``) is allowed.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
from typing import Iterator, Sequence

from torch import nn

from .errors import DelegationError

__all__ = ["forbidden_files", "check_no_reference_subclass", "watch_reference", "no_delegation"]


def forbidden_files(modules: Sequence[str]) -> dict[str, str]:
    """Source files of the reference ``modules`` that exist (``path -> module name``)."""
    files = {}
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        path = getattr(mod, "__file__", None)
        if path:
            files[os.path.realpath(path)] = name
    return files


def _is_reference(cls: type, modules: Sequence[str]) -> bool:
    mod = getattr(cls, "__module__", "") or ""
    return any(mod == m or mod.startswith(m + ".") for m in modules)


def check_no_reference_subclass(obj: object, modules: Sequence[str], part: str) -> None:
    """Fail if ``obj`` (a class or an instance) is or contains a reference class of ``modules``."""
    cls = obj if isinstance(obj, type) else type(obj)
    for base in inspect.getmro(cls):
        if _is_reference(base, modules):
            raise DelegationError(
                f"{cls.__name__} subclasses flowlab's {base.__module__}.{base.__name__}. This part "
                "asks you to write the layer yourself: subclass flowlab.transforms.base.Transform "
                "and implement forward and inverse. No points for this part.",
                part,
            )
    if isinstance(obj, nn.Module):
        for name, sub in obj.named_modules():
            if sub is not obj and _is_reference(type(sub), modules):
                raise DelegationError(
                    f"your layer holds flowlab's {type(sub).__module__}.{type(sub).__name__} "
                    f"(as `{name}`) and lets it do the work. Write the computation yourself. No "
                    "points for this part.",
                    part,
                )


@contextlib.contextmanager
def watch_reference(modules: Sequence[str]) -> Iterator[list[str]]:
    """Record every call into the reference ``modules`` made inside the ``with`` block."""
    files = forbidden_files(modules)
    seen: list[str] = []
    previous = sys.getprofile()

    def profiler(frame, event, arg):  # noqa: ANN001 - the sys.setprofile signature
        if event == "call":
            path = frame.f_code.co_filename
            if path in files or os.path.realpath(path) in files:
                qual = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
                seen.append(f"{files.get(path) or files[os.path.realpath(path)]}.{qual}")

    sys.setprofile(profiler)
    try:
        yield seen
    finally:
        sys.setprofile(previous)


@contextlib.contextmanager
def no_delegation(modules: Sequence[str], part: str) -> Iterator[None]:
    """Run the student's code; fail with :class:`DelegationError` if it called the reference."""
    with watch_reference(modules) as seen:
        yield
    if seen:
        raise DelegationError(
            f"your code calls flowlab's reference implementation ({seen[0]}) for a part you "
            "were asked to write yourself. Implement it with torch operations. No points for "
            "this part.",
            part,
        )
