"""One child process of the supervisor: start, watch, restart with backoff, stop.

Children write stdout and stderr to ``<log_dir>/<name>.log`` (appended), so a start that fails
can say why by quoting the tail of the log. Each child gets every CPU of the machine back
(the supervisor itself may be pinned): the agent runner pins it to its own CPU from the layout.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

LOG_TAIL_BYTES = 64 * 1024


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], log_dir: Path, *, env: dict | None = None,
                 cwd: str | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_dir / f"{name}.log"
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.restarts = 0                    # since the start of the day (status)
        self.recent_restarts: list[int] = []  # monotonic ns of the restarts inside the policy's window
        self.last_exit: int | None = None
        self.last_pid = 0                    # the pid of the process that exited last (known after the reap)
        self.next_start_ns = 0               # monotonic; restart not before
        self.started_ns = 0
        self.wanted = True                   # False once stopped on purpose

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def poll_exit(self) -> int | None:
        """The exit status if the process ended since the last call, else None."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None:
            return None
        self.last_exit = code
        self.last_pid = self.proc.pid
        self.proc = None
        return code

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         cwd=self.cwd, start_new_session=False)
        try:
            os.sched_setaffinity(self.proc.pid, range(os.cpu_count() or 1))
        except OSError:
            pass
        self.starts += 1
        self.started_ns = time.monotonic_ns()

    def signal(self, sig: int) -> None:
        if self.alive():
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout_s: float) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``: the exit status."""
        self.wanted = False
        if self.proc is None:
            return self.last_exit
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self.last_exit = code
        self.last_pid = self.proc.pid
        self.proc = None
        return code

    def log_tail(self, lines: int = 15) -> str:
        """The log's last ``lines`` lines, read from its last 64 KiB only: it runs in the supervisor's duty
        cycle when a child exits (before a takeover), and a day's log can be large."""
        try:
            with open(self.log_path, "rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(0, size - LOG_TAIL_BYTES))
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        kept = text.splitlines()
        if size > LOG_TAIL_BYTES and kept:
            kept = kept[1:]                  # the first line read may be cut: not shown
        return "\n".join(kept[-lines:])


def agent_argv(layout_path: str, process: str) -> list[str]:
    return [sys.executable, "-m", "appliance.runtime.agent", "--layout", layout_path, "--process", process]
