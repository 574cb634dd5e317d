"""Hostile submissions, graded in the sandbox: each attack fails, the rest is graded.

A class of two honest students and one student per attack is autograded once per test session
(in parallel, two workers; pytest-xdist workers share the result).  Every hostile submission
defines a correct ``square`` first, so it must still get full marks (3 points): graded on what it
did correctly.  Each test then checks that its attack failed, and that nothing of the others was
read, changed or lost.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import course as synthetic


pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.slow,
    pytest.mark.xdist_group("hostile-class"),   # with --dist loadgroup: one worker grades
    pytest.mark.usefixtures("bwrap"),
]

SECRET = "GRADER_SECRET_93a1"
# every attack walks the visible file system for course files, prints what it finds with a
# LEAK prefix, and ends by printing ATTEMPTED (so that a test cannot pass because it never ran)
FIND = '''
import glob, os, sys
# the interpreter, its environment and the system are visible on purpose: skip them
_SKIP = {"/usr", "/proc", "/sys", "/dev", os.path.realpath(sys.prefix),
         os.path.realpath(sys.base_prefix)}
def _candidates():
    for up in range(1, 7):
        for pattern in ("source/**/*.ipynb", "release/**/*.ipynb", "submitted/**/*.ipynb",
                        "autograded/**/*.ipynb", "*.ipynb", "*/*.ipynb", "gradebook.db"):
            yield from glob.glob("../" * up + pattern, recursive=True)
    for top, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(top, d)) not in _SKIP]
        for name in files:
            if name.endswith((".ipynb", ".db")):
                yield os.path.join(top, name)
'''
ATTACKS = {
    "read_source": FIND + '''
for path in _candidates():
    try:
        print("LEAK", path, open(path, errors="replace").read())
    except OSError as err:
        print("blocked", path, err)
print("ATTEMPTED")
''',
    "read_other": '''
for path in ["../../../submitted/honest/ps1/ps1.ipynb", "../../honest/ps1/ps1.ipynb",
             "../honest/ps1/ps1.ipynb"]:
    try:
        print("LEAK", open(path).read())
    except OSError as err:
        print("blocked", err)
print("ATTEMPTED")
''',
    "gradebook": FIND + '''
import sqlite3
for path in list(_candidates()) + ["../../../gradebook.db"]:
    if path.endswith(".db"):
        try:
            db = sqlite3.connect(path)
            db.execute("UPDATE grade SET manual_score = 100")
            db.execute("DROP TABLE student")
            db.commit()
            print("LEAK modified", path)
        except Exception as err:
            print("blocked", err)
        try:
            open(path, "wb").write(b"garbage")
            print("LEAK overwrote", path)
        except OSError as err:
            print("blocked", err)
print("ATTEMPTED")
''',
    "socket": '''
import socket
for host, port in [("127.0.0.1", PORT), ("1.1.1.1", 53), ("8.8.8.8", 443)]:
    try:
        socket.create_connection((host, port), timeout=3)
        print("LEAK connected", host, port)
    except OSError as err:
        print("blocked", host, err)
print("ATTEMPTED")
raise ConnectionError("the network should not be reachable")
''',
    "fork_bomb": '''
import os
print("ATTEMPTED")
while True:
    os.fork()
''',
    "memory": '''
print("ATTEMPTED")
blocks = [bytearray(2**28) for _ in range(10_000)]   # 2.5 TiB
''',
    "fill_disk": '''
import os
print("ATTEMPTED")
for where in (".", "/tmp"):
    try:
        for i in range(10_000):
            with open(os.path.join(where, f"fill{i}"), "wb") as handle:
                for _ in range(64):
                    handle.write(b"0" * 2**20)
    except OSError as err:
        print("stopped", where, err)
''',
    "spin": '''
print("ATTEMPTED")
while True:
    pass
''',
    "environ": '''
import os
print("LEAK" if any("SECRET" in k for k in os.environ) else "clean", dict(os.environ))
print("ATTEMPTED")
''',
}


def _grade_class(root: str) -> dict:
    """Submit the class into a new course at ``root`` and grade it (2 workers)."""
    from dataclasses import asdict

    from flowlab_course.parallel import autograde_parallel

    os.makedirs(root, exist_ok=True)
    synthetic.make_course(root)
    listener = socket.socket()   # on the grader's loopback: no kernel may ever connect to it
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    synthetic.submit(root, "honest", synthetic.CORRECT)
    synthetic.submit(root, "mistaken", synthetic.MISTAKEN)
    for name, attack in ATTACKS.items():
        synthetic.submit(root, name, synthetic.CORRECT + attack.replace("PORT", str(port)))
    digests = {
        path: _sha256(path)
        for folder in ("source", "release", "submitted")
        for path in _files(os.path.join(root, folder))
    }
    os.environ[f"{SECRET}_NAME"] = SECRET
    try:
        results = autograde_parallel(root, synthetic.ASSIGNMENT, workers=2, progress=False)
    finally:
        del os.environ[f"{SECRET}_NAME"]
    connections = 0
    try:
        while True:
            listener.accept()[0].close()
            connections += 1
    except BlockingIOError:   # nobody (else) reached the grader's loopback
        pass
    finally:
        listener.close()
    return {"root": root, "results": [asdict(r) for r in results], "digests": digests,
            "connections": connections}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The class, graded once per test session (also under pytest-xdist)."""
    from flowlab_course.parallel import GradingResult

    data = synthetic.once_per_session(tmp_path_factory, "hostile-class", _grade_class)
    return dict(data, results=[GradingResult(**r) for r in data["results"]])


def _sha256(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _files(folder):
    for top, _, files in os.walk(folder):
        for name in files:
            yield os.path.join(top, name)


def _check_attack(graded, name: str) -> str:
    """The student got full marks, the attack ran, nothing leaked; return the notebook text."""
    result = {r.student: r for r in graded["results"]}[name]
    assert result.ok, result.error
    assert synthetic.scores(graded["root"])[name] == {"test_visible": 1.0, "test_hidden": 2.0}
    text = _outputs(graded["root"], name)
    assert "ATTEMPTED" in text
    assert "LEAK" not in text
    return text


def _outputs(root: str, student: str) -> str:
    """Everything the student's cells printed or raised, as one string."""
    import nbformat

    path = os.path.join(root, "autograded", student, synthetic.ASSIGNMENT,
                        synthetic.ASSIGNMENT + ".ipynb")
    parts = []
    for cell in nbformat.read(path, as_version=4).cells:
        for out in cell.get("outputs", []):
            parts += [out.get("text", ""), out.get("ename", ""), out.get("evalue", "")]
            parts += [str(v) for v in out.get("data", {}).values()]
    return "\n".join(parts)


def test_honest_and_mistaken_students_are_graded(graded):
    scores = synthetic.scores(graded["root"])
    assert scores["honest"] == {"test_visible": 1.0, "test_hidden": 2.0}
    assert scores["mistaken"] == {"test_visible": 1.0, "test_hidden": 0.0}
    assert set(scores) == {"honest", "mistaken", *ATTACKS}   # nobody lost


def test_read_source_fails(graded):
    text = _check_attack(graded, "read_source")
    assert synthetic.HIDDEN_MARKER not in text


def test_read_other_student_fails(graded):
    text = _check_attack(graded, "read_other")
    assert "STUDENT_honest_MARK" not in text


def test_gradebook_cannot_be_opened_or_modified(graded):
    _check_attack(graded, "gradebook")
    db = sqlite3.connect(os.path.join(graded["root"], "gradebook.db"))
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM student").fetchone()[0] == 2 + len(ATTACKS)
    assert db.execute("SELECT MAX(manual_score) FROM grade").fetchone()[0] is None


def test_socket_fails(graded):
    text = _check_attack(graded, "socket")
    assert "ConnectionError" in text and text.count("blocked") == 3
    assert graded["connections"] == 0   # nobody ever reached the grader's loopback


def test_fork_bomb_fails(graded):
    text = _check_attack(graded, "fork_bomb")
    assert "BlockingIOError" in text or "KeyboardInterrupt" in text or "CellTimeoutError" in text


def test_memory_bomb_fails(graded):
    assert "MemoryError" in _check_attack(graded, "memory")


def test_disk_filling_fails(graded):
    text = _check_attack(graded, "fill_disk")
    assert "No space left" in text or "File too large" in text
    big = [p for p in _files(graded["root"]) if os.path.getsize(p) > 2**20]
    assert big == []   # nothing reached the host's disk


def test_spin_forever_is_interrupted(graded):
    text = _check_attack(graded, "spin")
    assert "KeyboardInterrupt" in text or "CellTimeoutError" in text


def test_grader_environment_is_invisible(graded):
    text = _check_attack(graded, "environ")
    assert SECRET not in text and "clean" in text


def test_nothing_else_was_touched(graded):
    for path, digest in graded["digests"].items():
        assert _sha256(path) == digest, path
