"""nbgrader configuration of the flowlab course (run the nbgrader CLI from this folder).

    nbgrader generate_assignment --all --force   # source/ -> release/  (make release)
    nbgrader autograde --all                     # submitted/ -> autograded/  (make autograde)
    nbgrader generate_feedback --all             # autograded/ -> feedback/  (make feedback)
    nbgrader export --to grades.csv              # the gradebook as CSV  (make grades)

See book/instructors.md for the whole workflow and what the settings below protect against.
"""

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)

from flowlab_course.plugins import GradingExecute, LimitOutputSize, SanitizeFeedback
from flowlab_course.sandbox import configure as configure_sandbox

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "flowlab"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".DS_Store"]

# The stub a student sees in place of each ### BEGIN SOLUTION region.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# ---- executing submissions (autograde and validate) ---------------------------------------
# Per-cell limit: an infinite loop is interrupted after this many seconds, that cell scores 0
# and the rest of the notebook is graded (training cells are shortened under NBGRADER_EXECUTION
# and take a few seconds).
c.Execute.timeout = 60
# Each submission's kernel runs in a bubblewrap sandbox where bwrap works (no network, the course,
# other students and the gradebook invisible, limits on memory/CPU/processes/files; see
# book/sandbox.md); elsewhere nbgrader warns and uses the plain kernel.  FLOWLAB_SANDBOX=0 turns
# it off.
configure_sandbox(c)
c.Execute.shutdown_kernel = "immediate"  # nothing to save: do not wait for a graceful exit
c.GradingExecute.memory_limit_mb = 8192    # RLIMIT_AS inside the kernel: MemoryError, not OOM
c.GradingExecute.max_kernel_restarts = 3   # cells that kill the kernel are skipped, rest graded
c.Autograde.autograde_preprocessors = [
    GradingExecute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    LimitOutputSize,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
# nbgrader zeroes a test cell that wrote anything to stderr.  Warnings (torch's UserWarnings,
# DeprecationWarnings of a library) are not errors: drop stderr chunks that are warnings.
c.IgnorePattern.pattern = r"(?m)^(.*:\d+: )?\w*Warning: "
c.IgnorePattern.enabled = True  # off by default in nbgrader 0.9
c.LimitOutput.max_lines = 1000
# The trusted grader's flags for the instructor (kernel deaths, grading without separation, notes)
# travel in the notebook's metadata to the class report: keep them if metadata is cleared.
c.ClearMetadataPreprocessor.preserve_nb_metadata_mask = {("language_info", "name"), "flowlab"}
c.LimitOutputSize.max_chars = 20000

# ---- feedback: the student's view --------------------------------------------------------
# Hidden-test regions are removed and test-cell tracebacks cut to their message.
c.GenerateFeedback.preprocessors = [GetGrades, SanitizeFeedback, CSSHTMLHeaderPreprocessor]
