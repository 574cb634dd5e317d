"""Make this folder's helper modules (nbgrader_course, catalogue) importable by its tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nbgrader_course import course_factory  # noqa: E402,F401  (a fixture)


import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_torch():
    """Graders may change torch's default dtype, threads or RNG: every test starts clean."""
    state = torch.get_default_dtype(), torch.get_num_threads(), torch.random.get_rng_state()
    yield
    torch.set_default_dtype(state[0])
    torch.set_num_threads(state[1])
    torch.random.set_rng_state(state[2])
