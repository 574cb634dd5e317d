r"""The executor of :func:`flowlab_course.parallel.autograde_parallel`: a Dask distributed cluster.

:func:`run_on_dask` runs one task per submission and yields each outcome as it arrives.  It
knows nothing of nbgrader: the task is a function and a picklable job (the bookkeeping —
fingerprints, the gradebook, the journal — is :mod:`flowlab_course.parallel`'s).

* **Where.**  Without a scheduler address it starts a ``LocalCluster`` on the loopback: N worker
  processes (each watched by a Dask *nanny*, which restarts it if it dies), one thread each, so
  that one worker grades one submission at a time.  With ``scheduler="tcp://host:8786"`` it
  connects to a running cluster: ``dask scheduler`` and ``dask worker`` started by hand, or by
  dask-jobqueue (Slurm, PBS, SGE, LSF) or dask-kubernetes; see :data:`RECIPES`.  The workers
  need the course environment (flowlab, flowlab-course, nbgrader, bubblewrap for the sandbox)
  but no shared file system: jobs and results travel as bytes.
* **Lost workers.**  A task whose worker dies (killed, preempted, out of memory, its node
  gone) is rescheduled by Dask on another worker.  Every death counts against the tasks that
  were running there; past ``allowed_failures`` the task is given up (``KilledWorker``): that
  submission comes back as :class:`WorkerDied` and every other goes on.  With one thread per
  worker only the culprit is running when a submission kills its own worker, so innocent
  submissions are only ever retried.
* **Once.**  Each task has a key made of the student, the fingerprint of the submission and the
  run; each outcome is yielded exactly once, whatever happened on the way.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

__all__ = ["RECIPES", "WorkerDied", "dask_client", "loopback_address", "run_on_dask"]

#: How to get a scheduler address on a cluster (documentation; nothing here installs them).
RECIPES = r"""
Slurm or PBS (pip install dask-jobqueue), on the login node, in the course folder:

    from dask_jobqueue import SLURMCluster          # or PBSCluster, SGECluster, LSFCluster
    cluster = SLURMCluster(cores=1, processes=1, memory="8GB", walltime="01:00:00",
                           job_script_prologue=["source /path/to/course/.venv/bin/activate"],
                           scheduler_options={"dashboard_address": "127.0.0.1:8787"})
    # the dashboard listens on the login node's loopback only: ssh -L 8787:127.0.0.1:8787 login
    cluster.scale(jobs=40)                          # 40 workers, one submission each at a time
    print(cluster.scheduler_address)                # tcp://10.0.0.5:8786
    # keep this session open (the cluster lives as long as it does); in another shell, in the
    # course folder:  python -m flowlab_course autograde ASSIGNMENT --scheduler tcp://10.0.0.5:8786
    # or, in this session:
    from flowlab_course.parallel import autograde_parallel
    autograde_parallel(".", "ASSIGNMENT", scheduler=cluster.scheduler_address)

Kubernetes (pip install dask-kubernetes; the image holds the course environment):

    from dask_kubernetes.operator import KubeCluster
    cluster = KubeCluster(name="grading", image="registry.example.org/flowlab-course:2026",
                          n_workers=40, resources={"requests": {"cpu": "1", "memory": "8Gi"}},
                          worker_command="dask worker --nthreads 1 --no-dashboard",
                          scheduler_service_type="ClusterIP")   # not exposed outside the cluster
    print(cluster.scheduler_address)
    # the dashboard: kubectl port-forward service/grading-scheduler 8787 (on your loopback)

By hand (any machines that reach each other):

    dask scheduler --port 8786 --dashboard-address 127.0.0.1:8787     # on one machine
    dask worker tcp://SCHEDULER:8786 --nworkers 8 --nthreads 1 \\
        --no-dashboard                                                # on each grading machine

The dashboard shows task keys (student names) and can run profiling: keep it on the loopback
(as above; Dask's default listens on every interface) and reach it through an ssh tunnel.
The local cluster of `python -m flowlab_course autograde` has no dashboard unless asked for
(`--dashboard :8787`, on 127.0.0.1).  Workers grade in scratch folders under $FLOWLAB_SCRATCH
(default: the temporary folder); a killed worker's folder is removed by the next submission
graded on that machine and at the end of every run.

Workers need `bwrap` for the sandbox (flowlab_course.sandbox); Kubernetes pods need the
privileges bubblewrap asks for (user namespaces), or the sandbox is off with a warning.  A
sandboxed kernel has no network, so it cannot reach the scheduler; on a network other people
share, give the scheduler Dask's TLS security (`distributed.comm.require-encryption`, a
`Security` object), since whoever reaches it can run code on the workers.  Set
`distributed.scheduler.allowed-failures` on the scheduler (environment variable
DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=3) to choose how many workers one submission
may kill before it is graded zero.
"""


class WorkerDied(RuntimeError):
    """A task given up by Dask: every worker that ran it died (``KilledWorker``)."""


def loopback_address(address: str | None) -> str | None:
    """A dashboard address bound to the loopback unless it names a host.

    ``None`` (no dashboard) stays ``None``; ``"8787"`` or ``":8787"`` becomes
    ``"127.0.0.1:8787"``; ``"0.0.0.0:8787"`` (every interface) only when asked for so.

        >>> loopback_address(":0"), loopback_address("8787"), loopback_address("10.0.0.5:8787")
        ('127.0.0.1:0', '127.0.0.1:8787', '10.0.0.5:8787')
    """
    if address is None:
        return None
    address = str(address).strip()
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = "", address
    return f"{host or '127.0.0.1'}:{port or 0}"


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                allowed_failures: int = 3, dashboard: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: of a running scheduler, or of a new local cluster.

    Args:
        scheduler: address of a running scheduler (``tcp://host:8786``); ``None`` starts a
            ``LocalCluster`` of ``workers`` processes, one thread each, on ``127.0.0.1``, and
            closes it at the end.
        workers: processes of the local cluster (default: the number of cores).
        allowed_failures: worker deaths a task may cause before Dask gives it up (the local
            cluster's scheduler setting; a running scheduler keeps its own).
        dashboard: the local cluster's dashboard (``":8787"``; see :func:`loopback_address`:
            on the loopback unless the address names another host); default: no dashboard.

    Example::

        with dask_client(workers=2) as client:
            print(client.submit(sum, [1, 2]).result())
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout="60s")
        try:
            yield client
        finally:
            client.close()
        return
    with dask.config.set({"distributed.scheduler.allowed-failures": int(allowed_failures)}):
        # the scheduler serves HTTP (health checks) even without a dashboard: on the loopback,
        # on a free port (Dask's default 8787 may be taken by another cluster)
        quiet = {} if dashboard else {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
        cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                               processes=True, host="127.0.0.1",
                               dashboard_address=loopback_address(dashboard),
                               scheduler_kwargs=quiet, silence_logs=logging.ERROR)
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()


def run_on_dask(
    function: Callable[[Any], Any],
    jobs: Mapping[str, Any],
    keys: Mapping[str, str],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    allowed_failures: int = 3,
    dashboard: str | None = None,
    finally_run: Callable[[], Any] | None = None,
) -> Iterator[tuple[str, Any]]:
    """Run ``function(job)`` for every job on Dask; yield ``(name, result)`` as each finishes.

    ``result`` is what ``function`` returned, the exception it raised, or a
    :class:`WorkerDied` when the task killed ``allowed_failures + 1`` workers.  Each name is
    yielded exactly once.  ``keys`` gives every task a unique Dask key.  ``finally_run`` is
    run once on every worker at the end (cleaning up after workers that were killed).
    """
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    with dask_client(scheduler, workers, allowed_failures, dashboard) as client:
        futures = {client.submit(function, job, key=keys[name], pure=False, retries=0): name
                   for name, job in jobs.items()}
        for future in as_completed(futures):
            name = futures[future]
            try:
                outcome = future.result()
            except KilledWorker as err:
                outcome = WorkerDied(f"Dask gave up after worker deaths: {err}")
            except Exception as err:  # the task's own error, reported with its submission
                outcome = err
            finally:
                future.release()
            yield name, outcome
        if finally_run is not None:
            with contextlib.suppress(Exception):   # a worker that is gone has nothing to clean
                client.run(finally_run)
