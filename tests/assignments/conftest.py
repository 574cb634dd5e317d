"""Make this folder's helper modules (nbgrader_course, catalogue) importable by its tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nbgrader_course import course_factory  # noqa: E402,F401  (a fixture)
