"""Code that runs in the student's kernel: real modules whose *text* the trusted side sends there.

The course package has two sides, and this folder is the only code of the first:

* **in the student's kernel** (this folder): :mod:`.channel` (the wire: plain values in, plain
  values out), :mod:`.probes` (one function per kind of probe: build the student's object from
  data the grader chose, call it, collect the values) and :mod:`.pieces` (grader-written
  computations that isolate a later part from an earlier one, sent only by the parts that
  declare ``reveals``).  Standard library and torch only (a piece may also use flowlab's
  *ungraded* modules); nothing here imports :mod:`flowlab_course`, because in the kernel there
  is no ``flowlab_course``: the modules arrive as text (:func:`source`), once per kernel.
* **in the grader's process** (:mod:`flowlab_course.trusted`, :mod:`flowlab_course.graders`):
  everything that decides.  A request to the kernel *names* a probe function and passes plain
  data (JSON, tensors as raw bytes); no code string is ever built or sent per request.

Nothing in this folder decides a verdict: a student's code can rewrite all of it at run time (it
is their interpreter), which can only change the values sent back, checked like any answer.
"""

from __future__ import annotations

import functools
import os

__all__ = ["HERE", "source"]

HERE = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def source(name: str) -> str:
    """The text of the kernel-side module ``name`` (``"channel"``, ``"probes"``, ``"pieces/coupling"``)."""
    path = os.path.join(HERE, *f"{name}.py".split("/"))
    if ".." in name.split("/") or not os.path.isfile(path):
        raise KeyError(f"no kernel-side module {name!r} in {HERE}")
    with open(path, encoding="utf-8") as handle:
        return handle.read()
