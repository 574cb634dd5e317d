"""Grader-written pieces that a probe uses in the student's kernel (real modules, not strings).

A piece isolates a later part from an earlier one: RealNVP's stack is graded with the grader's
coupling, the training loop with the grader's flow, multi-scale with the grader's squeezing
blocks, the 1x1 convolution with the grader's ``weight()``, causal attention with the grader's
``causal_mask``, so that a mistake costs only its own part.  Each piece is self-contained (torch
and the *ungraded* parts of flowlab only: it must work in the grading kernel, whose flowlab has
the graded pieces stubbed, see :mod:`flowlab_course.trusted.redaction`).

Unlike :mod:`..probes` (drivers sent once, when the channel starts, that compute nothing
graded), a piece enters the kernel only when a probe request asks for it
(``KernelBridge.call(..., pieces=("coupling",))``), and only parts that declare
``reveals=(X, ...)`` for what the piece implements ask for it: the runner grades them after X,
so the piece can never serve as a reference for X.  A piece is defined once per kernel and stays
in the channel afterwards (as the student's code could keep any object a probe hands it): by
then every part it implements has its final verdict.  The recorder and the temperature flow
implement no graded part.
"""

__all__ = ["NAMES"]

#: The pieces a probe request may ask for (``flowlab_course.kernel.source("pieces/<name>")``).
NAMES = ("coupling", "recorder", "multiscale", "lu_weight", "causal_mask", "temperature")
