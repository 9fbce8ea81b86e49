import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")


# The shipped weights must be byte-identical after the whole suite (issue #15): every test that trains or saves
# writes into a tmp_path or runs/, never into the package. Checked once per session, at its end.
def _weights_digest():
    import hashlib
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "course_lib" / "weights"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def pytest_sessionstart(session):
    session.config._shipped_weights = _weights_digest()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_shipped_weights", None)
    if before is None or hasattr(session.config, "workerinput"):
        return
    after = _weights_digest()
    changed = sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))
    if changed:
        print(f"\nFAILED: the test suite changed the shipped weights in course_lib/weights/: {changed}")
        session.exitstatus = 1
