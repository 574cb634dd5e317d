# flowlab — the two commands of the README:
#   make course   build the course: the site into _build/html and the student release
#   make test     install what the tests need and run the whole suite
# Both bootstrap their own virtual environment in .venv.

PYTHON     ?= python3
VENV       ?= .venv
# The CPU wheel that lies on this machine's disk; override elsewhere, e.g.
#   make course TORCH_SPEC='torch>=2.2'     (any recent torch works)
TORCH_SPEC ?= torch==2.13.0
PY         := $(VENV)/bin/python
JB         := $(VENV)/bin/jupyter-book
NBGRADER   := cd assignments && ../$(VENV)/bin/nbgrader
JOBS       ?= 2
PYTEST_ARGS ?=

.PHONY: help course test test-quick venv system-deps autograde-cluster export-lms book book-quick book-pdf release autograde feedback grades \
        autograde-parallel grading-report bench bench-quick bench-images bench-trainer \
        bench-grading clean distclean

help:
	@echo "make course      build the course site (_build/html) and the student release"
	@echo "make test        run the whole test suite (unit, notebooks, nbgrader round trips, site)"
	@echo "make test-quick  unit tests only (a few minutes)"
	@echo "make book        build the site only;  make book-quick: fewer training steps;  make book-pdf: one PDF"
	@echo "make release     nbgrader: generate the student release of every assignment"
	@echo "make autograde   nbgrader: autograde every collected submission (repaired or zeroed and flagged if nbgrader cannot read it)"
	@echo "make feedback    nbgrader: generate feedback;  make grades: export grades.csv"
	@echo "make autograde-parallel  sandboxed parallel autograde (Dask LocalCluster);  make grading-report: class report"
	@echo "make autograde-cluster SCHEDULER=tcp://host:8786   the same on a Dask cluster"
	@echo "make export-lms ROSTER=roster.csv [EXPORT_ARGS='--lms canvas']   Canvas, Moodle, nbgrader and per-part CSVs"
	@echo "make bench       benchmarks (benchmarks/README.md);  make bench-quick: quick mode"
	@echo "make bench-images | bench-trainer | bench-grading   the other benchmarks"

# ---------------------------------------------------------------- environment
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml assignments/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the project's range (torch>=2.2) is then already satisfied and
	# pip never fetches a multi-GB CUDA build on a CPU machine.
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	# .[all]: the library with its mnist, book, test, bench and student extras (student: JupyterLab 4
	# and nbgrader's student tools, what a student installs; tests/course/test_student_setup.py)
	$(PY) -m pip install --quiet -e ".[all]"
	# the course infrastructure (graders, sandbox, cluster grading): a package of its own that
	# depends on flowlab, never the reverse
	$(PY) -m pip install --quiet -e ./assignments
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (flowlab)" >/dev/null
	touch $@

# ---------------------------------------------------------------- the course
# The student release does not depend on the book: it is built first, and a chapter that fails
# to execute (a busy machine, a cell past its time limit) still leaves the release and the rest
# of the site; `course` then exits non-zero with a summary of what failed and what to do.
course: venv
	@status=0; \
	$(MAKE) --no-print-directory release || { status=1; echo "make course: the student release FAILED (see above)"; }; \
	$(MAKE) --no-print-directory book || { status=1; echo "make course: the site built with problems (summary above)"; }; \
	if [ $$status -ne 0 ]; then exit 1; fi; \
	echo "Course built: site in _build/html/index.html, student release in assignments/release/"

# Each build ends with book/_ext/build_report.py: one paragraph per chapter that failed to
# execute (its name, the error, what to do), read from _build/html/reports.
BOOK_BUILD = $(PY) book/_ext/build_report.py _build/html --clear; status=0; \
	$(JB) build . --warningiserror --keep-going || status=$$?; \
	$(PY) book/_ext/build_report.py _build/html || status=1; \
	if [ $$status -ne 0 ]; then echo "make book: FAILED (exit $$status); the summary above names each failed chapter, Sphinx's warnings are above it"; fi; \
	exit $$status

book: venv
	@$(BOOK_BUILD)

book-quick: venv
	@export FLOWLAB_QUICK=1; $(BOOK_BUILD)

# The whole book as one PDF, offline: the single-page build (its notebooks come from the
# execution cache of `make book`; FLOWLAB_QUICK=1 for the quick cache) printed by headless
# Chromium once MathJax has typeset it.  The page is copied to the build's root, where its
# relative links to _static and _images resolve.
CHROMIUM ?= chromium
book-pdf: venv
	$(JB) build . --builder singlehtml --warningiserror --keep-going
	cp _build/singlehtml/book/intro.html _build/singlehtml/book-all.html
	$(CHROMIUM) --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
	  --run-all-compositor-stages-before-draw --virtual-time-budget=120000 --no-pdf-header-footer \
	  --print-to-pdf=$(CURDIR)/_build/book.pdf file://$(CURDIR)/_build/singlehtml/book-all.html
	@echo "whole-book PDF: _build/book.pdf"

# ---------------------------------------------------------------- grading (nbgrader CLI)
# nbgrader creates its gradebook with `alembic`, which it looks up on PATH: put the venv first.
# Each assignment is processed by its own call (nbgrader takes one assignment id at a time).
GRADING_PATH = export PATH="$(CURDIR)/$(VENV)/bin:$$PATH"

release: venv
	@$(GRADING_PATH); \
	ids=$$(ls -d assignments/source/*/ 2>/dev/null | xargs -rn1 basename); \
	if [ -z "$$ids" ]; then echo "no assignments yet"; exit 0; fi; \
	for a in $$ids; do ( $(NBGRADER) generate_assignment "$$a" --force ) || exit 1; done; \
	echo "student release written to assignments/release/"

# Every grading target works on the course folder GRADING_COURSE (default: assignments/).
# `make autograde` first stages each submission (python -m flowlab_course preflight): the
# student's files are copied unchanged into .flowlab-grading/submitted/, a notebook nbgrader
# cannot read (old/new metadata schema, copied or missing grade ids, changed cell types, deleted
# or moved cells) is repaired there from the release, an unreadable one is graded zero and
# flagged; nbgrader then grades the staged copy, so one bad notebook never stops the class.
GRADING_COURSE ?= assignments
GRADING_BIN     = $(abspath $(VENV))/bin
GRADING_ENV     = export PATH="$(GRADING_BIN):$$PATH"; cd "$(GRADING_COURSE)"
STAGED          = .flowlab-grading/submitted

autograde: venv
	@$(GRADING_ENV); \
	ids=$$(ls -d submitted/*/*/ 2>/dev/null | xargs -rn1 basename | sort -u); \
	if [ -z "$$ids" ]; then echo "nothing to grade: collect submissions into $(GRADING_COURSE)/submitted/<student>/<assignment>/"; exit 0; fi; \
	failed=0; for a in $$ids; do \
	  "$(GRADING_BIN)/python" -m flowlab_course preflight "$$a" && \
	  "$(GRADING_BIN)/nbgrader" autograde "$$a" --CourseDirectory.submitted_directory=$(STAGED) \
	  || { failed=1; echo "autograde $$a: some submissions were not graded (see above); the class report lists them"; }; \
	done; exit $$failed

feedback: venv
	@$(GRADING_ENV); \
	ids=$$(ls -d autograded/*/*/ 2>/dev/null | xargs -rn1 basename | sort -u); \
	if [ -z "$$ids" ]; then echo "nothing autograded yet: run make autograde first"; exit 0; fi; \
	failed=0; for a in $$ids; do "$(GRADING_BIN)/nbgrader" generate_feedback "$$a" || failed=1; done; \
	echo "feedback pages in $(GRADING_COURSE)/feedback/<student>/<assignment>/"; exit $$failed

# Sandboxed, parallel autograde of every collected assignment (experimental; book/sandbox.md),
# and the class report (score distributions, most frequent failures, flags, similarity) in
# $(GRADING_COURSE)/reports/.
autograde-parallel: venv
	@$(GRADING_ENV); \
	ids=$$(ls -d submitted/*/*/ 2>/dev/null | xargs -rn1 basename | sort -u); \
	failed=0; for a in $$ids; do "$(GRADING_BIN)/python" -m flowlab_course autograde "$$a" -j $(JOBS) || failed=1; done; exit $$failed

grading-report: venv
	@$(GRADING_ENV); \
	ids=$$(ls -d autograded/*/*/ 2>/dev/null | xargs -rn1 basename | sort -u); \
	for a in $$ids; do "$(GRADING_BIN)/python" -m flowlab_course report "$$a" || exit 1; done

# The same grading on a Dask cluster (SCHEDULER=tcp://host:8786; see book/sandbox.md), and the
# grades for an LMS (Canvas, Moodle, nbgrader and per-part CSVs in assignments/grades/).
SCHEDULER ?=
autograde-cluster: venv
	@test -n "$(SCHEDULER)" || { echo "make autograde-cluster needs SCHEDULER=tcp://HOST:8786"; exit 2; }
	@$(GRADING_ENV); \
	ids=$$(ls -d submitted/*/*/ 2>/dev/null | xargs -rn1 basename | sort -u); \
	failed=0; for a in $$ids; do "$(GRADING_BIN)/python" -m flowlab_course autograde "$$a" --scheduler $(SCHEDULER) || failed=1; done; exit $$failed

# ROSTER is a path from the repository root (or absolute); EXPORT_ARGS passes the export's
# other options, e.g. EXPORT_ARGS='--lms canvas' or '--moodle-identity email'.
EXPORT_ARGS ?=
export-lms: venv
	@$(GRADING_PATH); cd assignments && ../$(PY) -m flowlab_course export --to grades $(if $(ROSTER),--roster $(abspath $(ROSTER))) $(EXPORT_ARGS)

grades: venv
	@$(GRADING_PATH); $(NBGRADER) export --to grades.csv
	@echo "grades written to assignments/grades.csv"

# ---------------------------------------------------------------- tests
# OMP_NUM_THREADS=1: two pytest-xdist workers (and the kernels they start) share two cores.
# System programs the suite needs: bubblewrap (the grading sandbox), Chromium (the site test) and
# configurable-http-proxy (JupyterHub's proxy, from npm: the hub test).
# As root with apt-get they are installed; otherwise the target stops with the command to run.
# A test never skips because one of them is missing.
SYSTEM_DEPS_CHECK = missing=""; \
	command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (needed by the tests)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) || exit 2; \
	  else \
	    echo "make test needs$$missing: install with  sudo apt-get install -y$$missing  and run make test again" >&2; exit 2; \
	  fi; \
	fi; \
	if ! command -v configurable-http-proxy >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing configurable-http-proxy (JupyterHub's proxy, for tests/course/test_hub.py)"; \
	    command -v npm >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null) || exit 2; \
	    npm install -g --silent configurable-http-proxy >/dev/null || exit 2; \
	  else \
	    echo "make test needs configurable-http-proxy: install with  sudo apt-get install -y nodejs npm && sudo npm install -g configurable-http-proxy  and run make test again" >&2; exit 2; \
	  fi; \
	fi

system-deps:
	@$(SYSTEM_DEPS_CHECK)

test: venv system-deps
	OMP_NUM_THREADS=1 PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest -n $(JOBS) --dist loadgroup $(PYTEST_ARGS)

test-quick: venv
	OMP_NUM_THREADS=1 PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest -n $(JOBS) -m "not slow and not browser" $(PYTEST_ARGS)

# ---------------------------------------------------------------- benchmarks
bench: venv
	$(PY) benchmarks/run.py

bench-quick: venv
	$(PY) benchmarks/run.py --quick

# The other benchmarks (each has --quick): image models, trainer overhead, DDP scaling, grading.
bench-images: venv
	$(PY) benchmarks/images.py
bench-trainer: venv
	$(PY) benchmarks/trainer_overhead.py
	$(PY) benchmarks/ddp_scaling.py
bench-grading: venv
	$(PY) benchmarks/grading.py
	$(PY) benchmarks/grading_class.py
	$(PY) benchmarks/grading_determinism.py

clean:
	rm -rf _build .pytest_cache
distclean: clean
	rm -rf $(VENV)
