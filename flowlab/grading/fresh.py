"""Load a pristine copy of :mod:`flowlab.grading` for a hidden-test cell.

A notebook can rebind anything it can import: ``flowlab.grading.assignment2.grade_affine =
lambda *a: None`` or ``torch.allclose = lambda *a, **k: True``.  A hidden-test cell therefore
starts with ``grader = flowlab.grading.fresh.load()``, which executes the grading package again
from its files into new module objects (the student's rebindings live on the old ones) and puts
back the torch functions that a notebook replaced.

This protects the *tests* against patched helpers; it is not a sandbox (a student who
wants to attack the grader can still do so in the same process — see the instructors' page).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import types

__all__ = ["load"]

_counter = itertools.count()
_HERE = os.path.dirname(os.path.abspath(__file__))


def load() -> types.ModuleType:
    """Execute ``flowlab/grading`` from disk into a fresh package and return it."""
    name = f"_flowlab_grading_pristine_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(_HERE, "__init__.py"), submodule_search_locations=[_HERE]
    )
    if spec is None or spec.loader is None:  # pragma: no cover - the file is ours
        raise ImportError("cannot locate flowlab/grading on disk")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # relative imports inside the package need it registered
    try:
        spec.loader.exec_module(module)
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[key]
    module.restore_torch()
    return module
