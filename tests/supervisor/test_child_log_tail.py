"""A child's log tail is read from the end of its log, never the whole file: the supervisor reads it in its
duty cycle when a child exits, just before it hands the OMS to its standby, and a day's log can be large."""
from __future__ import annotations

import builtins

from appliance.supervisor.children import ManagedProcess

TAIL_BYTES = 64 * 1024               # children.LOG_TAIL_BYTES: what one tail may read


def test_the_tail_of_a_large_log_is_its_last_lines_read_from_its_end(tmp_path, monkeypatch):
    child = ManagedProcess("oms", ["true"], tmp_path)
    lines = [f"line {i} " + "x" * 90 for i in range(50_000)]          # ~5 MB
    child.log_path.write_text("\n".join(lines) + "\n")
    read = []
    real_open = builtins.open

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def seek(self, *a):
            return self.f.seek(*a)

        def read(self, *a):
            data = self.f.read(*a)
            read.append(len(data))
            return data

    def counting_open(path, *a, **k):
        return Counting(real_open(path, *a, **k))

    monkeypatch.setattr("pathlib.Path.read_text", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("the whole log read")))
    monkeypatch.setattr(builtins, "open", counting_open)
    assert child.log_tail(8) == "\n".join(lines[-8:])
    assert sum(read) <= TAIL_BYTES


def test_a_short_log_is_shown_whole_and_a_missing_one_is_empty(tmp_path):
    child = ManagedProcess("risk", ["true"], tmp_path)
    assert child.log_tail() == ""
    child.log_path.write_text("first\nsecond\n")
    assert child.log_tail(8) == "first\nsecond"
    assert child.log_tail(1) == "second"
