"""CPU and wall seconds of grading one solution notebook per assignment in a real Jupyter kernel.

The notebook runs in a kernel (nbclient); then every part's trusted grader probes it through a
KernelBridge, as under nbgrader (no sandbox, no nbgrader bookkeeping).  Printed per assignment:
the GRADING phase's wall time and CPU seconds of the grader process plus the kernel process (the
issue 27 budget: <= 20 s per submission on 2 cores; CPU seconds do not depend on the machine's
load, wall time does).  Results: benchmarks/results/grading_kernel_cpu.md.

    OMP_NUM_THREADS=1 PATH=$PWD/.venv/bin:$PATH .venv/bin/python benchmarks/grading_kernel_cpu.py [assignment ...]
"""
import os, resource, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "assignments"))
import psutil
from nbclient import NotebookClient
from local_grading import parts, source
from catalogue import CATALOGUE
from flowlab_course.trusted.bridge import KernelBridge
from flowlab_course.registry import lookup
from flowlab_course.graders.errors import GradingFailure

def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

for a in (sys.argv[1:] or sorted(CATALOGUE)):
    nb = source(a)
    mod = f"assignment{int(a[:2])}"
    client = NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True)
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                client.execute_cell(cell, i)
        pid = client.km.provisioner.process.pid
        kproc = psutil.Process(pid)
        k0 = sum(kproc.cpu_times()[:2]); s0 = cpu_self(); t0 = time.perf_counter()
        bridge = KernelBridge(client)
        fails, graded = {}, 0
        for p in parts(nb):
            try:
                lookup(f"{mod}.{p}").grade(bridge)
            except GradingFailure as err:
                fails[p] = str(err)[:80]
            graded += 1
        t1 = time.perf_counter(); k1 = sum(kproc.cpu_times()[:2]); s1 = cpu_self()
    print(f"{a}: grading {graded} parts: wall {t1 - t0:.2f} s, cpu {s1 - s0 + k1 - k0:.2f} s "
          f"(grader {s1 - s0:.2f} + kernel {k1 - k0:.2f}), failures {fails}", flush=True)
