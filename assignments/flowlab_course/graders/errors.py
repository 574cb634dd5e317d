"""The exceptions a hidden test raises (defined with the runner's contract in :mod:`..trusted.errors`).

Kept here under their usual name for the graders and their tests: ``from .errors import
GradingFailure``.  The classes are the trusted runner's own, so ``trusted/`` needs nothing from
``graders/``.
"""

from ..trusted.errors import DelegationError, GradingFailure, fail

__all__ = ["GradingFailure", "DelegationError", "fail"]
