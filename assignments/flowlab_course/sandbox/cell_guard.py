"""The cell guard: an IPython start-up file run by every sandboxed IPython kernel.

After a cell that leaves the sandbox (almost) out of processes, it ends every process but the
kernel: a fork bomb uses up ``RLIMIT_NPROC``, which the kernel shares with its children (threads
count), and its copies keep forking and writing to the kernel's stderr pipe, which would put an
error into every later cell.  A failing cell does this before its traceback is formatted (with
the bomb still running, that takes seconds).  Background processes that leave room (a
multiprocessing pool kept for the next cell) are left alone.  Cells that leave no process behind
pay for one listdir of ``/proc``.

The launcher copies this file's text into every sandbox as an IPython start-up file
(:data:`flowlab_course.sandbox.settings.STARTUP_FILE`); the grader never imports it.
"""


def _flowlab_install_cell_guard():
    import fcntl, os, resource, signal, struct, sys, termios, time

    kernel = os.getpid()

    def others():  # 1 is the sandbox's init; /proc shows this sandbox's processes only
        return [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, kernel)]

    def crowded():  # leftovers use up the process limit (threads count) that the kernel needs
        limit = resource.getrlimit(resource.RLIMIT_NPROC)[0]
        if limit == resource.RLIM_INFINITY or not others():
            return False
        tasks = 0
        for pid in os.listdir("/proc"):
            try:
                tasks += len(os.listdir(f"/proc/{pid}/task")) if pid.isdigit() else 0
            except OSError:
                pass  # it has just ended
        return limit - tasks < max(8, limit // 8)

    def unread(stream):
        fid = getattr(stream, "_fid", None)  # ipykernel's pipe that captures the fd
        if fid is None:
            return 0
        try:
            return struct.unpack("i", fcntl.ioctl(fid, termios.FIONREAD, b"\0" * 4))[0]
        except OSError:
            return 0

    def end(deadline):
        while others() and time.monotonic() < deadline:
            try:
                os.kill(-1, signal.SIGKILL)  # all processes we may signal, except ourselves
            except OSError:
                pass
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass  # our own dead children; init reaps the others
            except ChildProcessError:
                pass
            time.sleep(0.002)
        # what they wrote before they died belongs to this cell: let ipykernel forward it now
        while (unread(sys.stdout) or unread(sys.stderr)) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        sys.stdout.flush()
        sys.stderr.flush()

    def end_leftover_processes(result=None):
        if os.getpid() != kernel:
            os._exit(0)  # a forked copy of the kernel at the end of the cell: nothing left to do
        if not crowded():
            return  # processes it started in the background keep running
        deadline = time.monotonic() + 10
        while True:
            try:
                return end(deadline)
            except KeyboardInterrupt:
                pass  # a timeout's interrupt for the cell that has just ended: finish first

    shell = get_ipython()  # noqa: F821
    show_traceback = shell.showtraceback

    def showtraceback(*args, **kwargs):  # a failed cell: end its processes before the slow part
        end_leftover_processes()
        return show_traceback(*args, **kwargs)

    shell.showtraceback = showtraceback
    shell.events.register("post_run_cell", end_leftover_processes)


try:
    get_ipython  # noqa: B018 - defined in IPython start-up files
except NameError:  # imported outside IPython (a test, a linter): nothing to install
    pass
else:
    _flowlab_install_cell_guard()
    del _flowlab_install_cell_guard
