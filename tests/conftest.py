"""Shared test fixtures: unique layouts, spawned agent processes, and the /dev/shm cleanliness check."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from appliance.runtime.polling import poll_until

ROOT = Path(__file__).resolve().parent.parent
SUPPORT = Path(__file__).resolve().parent / "support"
TEST_PREFIX = "t"          # every test layout name starts with this and a per-run token
RUN_TOKEN = uuid.uuid4().hex[:6]

if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))


def wait_until(predicate, timeout: float, interval: float = 0.01, message: str = "condition"):
    """Poll `predicate` until it returns a truthy value; fail the test after `timeout` seconds."""
    value = poll_until(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout} s waiting for {message}")
    return value


def layout_document(name: str, processes: list[dict], rings: list[dict], *, backing: str = "4k",
                    mode: str = "0600", slots_per_process: int = 32, symbols: list[str] | None = None) -> dict:
    document = {
        "version": 1,
        "name": name,
        "segments": [{"name": "main", "backing": backing, "mode": mode}],
        "tables": [{"name": "counters", "kind": "counters", "segment": "main", "slots_per_process": slots_per_process},
                   {"name": "processes", "kind": "processes", "segment": "main"}],
        "rings": rings,
        "processes": processes,
    }
    if symbols:
        document["symbols"] = list(symbols)
        document["tables"].append({"name": "market_state", "kind": "market_state", "segment": "main"})
    return document


@pytest.fixture
def unique_name(request) -> str:
    return f"{TEST_PREFIX}{RUN_TOKEN}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def write_layout(tmp_path):
    """Write a layout document (dict or YAML text) to a file and return its path."""
    def write(document, filename: str = "layout.yaml") -> Path:
        path = tmp_path / filename
        path.write_text(document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False))
        return path
    return write


class Spawner:
    """Starts `python -m appliance.runtime.agent` processes and guarantees they are gone afterwards."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, layout_path, process: str, prefix: tuple = ()) -> subprocess.Popen:
        """``prefix``: a command that runs the agent and becomes it (``ip netns exec NAME``)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), str(ROOT), env.get("PYTHONPATH", "")])
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "appliance.runtime.agent", "--layout", str(layout_path),
                                 "--process", process], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def cleanup(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            if proc.stdout:
                proc.stdout.close()


@pytest.fixture
def spawner():
    s = Spawner()
    try:
        yield s
    finally:
        s.cleanup()


def output_of(proc: subprocess.Popen, timeout: float = 10) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out.decode(errors="replace") if out else ""


def _our_shm_files() -> list[str]:
    try:
        return sorted(f for f in os.listdir("/dev/shm") if f.startswith(f"{TEST_PREFIX}{RUN_TOKEN}"))
    except FileNotFoundError:
        return []


@pytest.fixture(autouse=True, scope="session")
def nothing_left_in_dev_shm():
    """After the whole suite, no segment a test created may remain in /dev/shm."""
    yield
    leftovers = _our_shm_files()
    for name in leftovers:
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except OSError:
            pass
    assert not leftovers, f"tests left shared-memory segments behind: {leftovers}"
