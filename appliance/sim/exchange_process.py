"""The simulated exchange as a child process: the one way anything starts it.

``ExchangeProcess(args)`` runs ``python -m appliance exchange ARGS`` with this appliance's code
on its ``PYTHONPATH`` and waits (polling, with a deadline) for its ``exchange ready KEY=HOST:PORT
...`` line, which says the ports it bound. Its output goes either to a log file (appended: a
restarted exchange writes on after the previous run, and the ready line is looked for only in
what this run wrote) or, without one, to a pipe a thread reads into ``lines`` (the pipe never
fills). Every path ends in ``close``, which kills and reaps a process still running.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

READY_PREFIX = "exchange ready "
SIMULATOR_NICE = 10          # below the appliance (nice 0): the flow yields the CPU to a woken process


def appliance_env(env: dict | None = None) -> dict:
    """The environment with this appliance's directory first on ``PYTHONPATH``, so a child runs
    the same code as its parent."""
    import appliance
    root = str(Path(appliance.__file__).resolve().parents[1])
    base = dict(os.environ if env is None else env)
    base["PYTHONPATH"] = os.pathsep.join(p for p in (root, base.get("PYTHONPATH")) if p)
    return base


def parse_ready_line(line: str) -> dict:
    """``exchange ready order_entry=127.0.0.1:4000 ...`` -> {"order_entry": ("127.0.0.1", 4000), ...};
    a value that is not HOST:PORT stays a string."""
    ports: dict = {}
    for word in line.split()[2:]:
        key, _, value = word.partition("=")
        host, _, port = value.rpartition(":")
        ports[key] = (host, int(port)) if port.isdigit() else value
    return ports


class ExchangeProcess:
    def __init__(self, args: list[str], *, log_path: str | Path | None = None, cwd: str | Path | None = None,
                 env: dict | None = None, prefix: tuple = ()) -> None:
        """``args`` after ``appliance exchange``; ``log_path``: append the output there instead of
        a pipe; ``env``: the environment (default this process's), this appliance put first on
        its ``PYTHONPATH``; ``prefix``: a command that runs it and becomes it (``ip netns exec NAME``:
        the exchange in a network namespace, its pid the exchange's)."""
        self.log_path = Path(log_path) if log_path is not None else None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
        command = [*prefix, sys.executable, "-m", "appliance", "exchange", *args]
        if self.log_path is not None:
            self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            with open(self.log_path, "ab") as out:
                self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                             env=appliance_env(env), cwd=cwd)
        else:
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, env=appliance_env(env), cwd=cwd, text=True)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def pin(self, cpu: int) -> bool:
        """Keep the exchange on ``cpu`` (the small profile's ``simulator_cpu``), away from the feed,
        and at nice ``SIMULATOR_NICE``, so an appliance process woken on that CPU runs before the
        exchange's background flow; a CPU this process may not use leaves it unpinned (False)."""
        try:
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, max(SIMULATOR_NICE, os.getpriority(os.PRIO_PROCESS, 0)))
            if cpu not in os.sched_getaffinity(0):
                return False
            os.sched_setaffinity(self.proc.pid, {cpu})
        except OSError:                     # the process already ended
            return False
        return True

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        """What this run has written so far."""
        if self.log_path is None:
            return "\n".join(self.lines)
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def output_tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def _ready_line(self) -> str | None:
        for line in self.output().splitlines():
            if line.startswith(READY_PREFIX):
                return line
        return None

    def wait_ready(self, timeout: float) -> dict:
        """Poll until the ready line; its ports (``parse_ready_line``). RuntimeError with the output's
        tail when the process exits first or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._ready_line()
            if line is not None:
                return parse_ready_line(line)
            if self.proc.poll() is not None:
                if self._reader is not None:
                    self._reader.join(2)
                line = self._ready_line()
                if line is not None:
                    return parse_ready_line(line)
                raise RuntimeError(f"the exchange exited {self.proc.returncode} before it was ready:\n"
                                   + self.output_tail())
            if time.monotonic() > deadline:
                raise RuntimeError(f"the exchange did not report ready within {timeout:g} s:\n" + self.output_tail())
            time.sleep(0.02)

    def terminate(self) -> None:
        """SIGTERM: the exchange ends its trading day (End of Session, records, report) and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait up to ``timeout`` (killed after that): the exit status."""
        self.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.returncode

    def close(self) -> None:
        """Kill the process if it still runs, and reap it (every path ends here)."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process SIGKILL does not end
            pass
        if self._reader is not None:
            self._reader.join(2)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> "ExchangeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
