"""flowlab_course: the autograding side of the flowlab course (it depends on flowlab, never the reverse).

The rooms, one idea each:

* :mod:`flowlab_course.trusted` — the trust boundary: hidden tests run in the grader's own
  process and talk to the student's kernel only through plain values (:mod:`.trusted.bridge`);
  the kernel imports a flowlab whose graded pieces are stubs (:mod:`.trusted.redaction`,
  separation instead of detection); the submitted source is read for the instructor's notes
  (:mod:`.trusted.static`);
* :mod:`flowlab_course.kernel` — the only code that runs in the student's kernel, sent there as
  module text: the channel, the probes (one function per kind of request: a request names one
  and passes plain data) and the grader-written pieces; standard library and torch only;
* :mod:`flowlab_course.graders` — one module of hidden tests per assignment, with the shared
  checks phrased in the lecture's terms (they import :mod:`.trusted`; :mod:`.trusted` never
  imports them);
* :mod:`flowlab_course.registry` — the composition of the two: which grader module holds a part
  and an assignment's ``GRADED`` declaration;
* :mod:`flowlab_course.plugins` — the nbgrader preprocessors (trusted execution, output limits,
  feedback without hidden tests);
* :mod:`flowlab_course.sandbox` — bubblewrap around every grading kernel;
* :mod:`flowlab_course.repair` — the preflight every grading path shares: a notebook nbgrader
  cannot grade (old/new metadata schema, copied or missing grade ids, changed cell types,
  deleted or moved cells) is repaired from the release in a staged copy, an unreadable one is
  graded zero and flagged; the student's file is never changed;
* :mod:`flowlab_course.parallel`, :mod:`flowlab_course.distributed` — grading many submissions
  on a Dask cluster (a ``LocalCluster`` here, Slurm/PBS/Kubernetes elsewhere): each worker runs
  nbgrader's whole autograde of a submission and returns its gradebook rows; the gradebook is
  written by one process only, in batches;
* :mod:`flowlab_course.export` — Canvas, Moodle, nbgrader and per-part CSVs;
* :mod:`flowlab_course.report` — the instructor's class report (distributions, failures, flags,
  code similarity);
* :mod:`flowlab_course.similarity` — how similar each submission's code is to flowlab's source
  and to the other submissions (normalised tokens; never a penalty);
* :mod:`flowlab_course.synthetic` — synthetic classes for the grading benchmarks.

``python -m flowlab_course --help`` lists the commands.  Importing this package imports nothing
heavy: each command loads what it needs.
"""

__version__ = "0.1.0"
