"""The first program inside the sandbox, run as ``python -I -S -c <this file's text> CFG ARGV...``.

It sets the resource limits (after the user namespace exists, so that ``RLIMIT_NPROC`` counts
this sandbox's processes only), becomes an unprivileged user when the sandbox was started by
root, then replaces itself with the kernel.  Standard library only: it runs with ``-S``.
"""

import json
import os
import resource
import sys


def main(argv: list) -> None:
    cfg = json.loads(argv[1])
    for name, soft, hard in cfg["rlimits"]:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    uid = cfg["uid"]
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv)
