"""An agent in a process of its own, on shared memory the benchmark creates and owns.

The feed benchmark's feed and ``bench hops``' measured agent are started, watched and ended the
same way: the segments created first, the process started with its output in a log, waited for
until its record in the process table says RUNNING (a clear error with the log's tail if it exits
or takes too long), stopped with SIGTERM, and on every path killed, reaped and the segments removed.
"""
from __future__ import annotations

import signal
import subprocess
import time



def agent_tables() -> list[dict]:
    """The tables of a bench layout whose agents run as in the appliance (counters, process table, market
    state, positions, control words): what the order-path agents read at start."""
    return [{"name": "counters", "kind": "counters", "segment": "main", "slots_per_process": 256},
            {"name": "processes", "kind": "processes", "segment": "main"},
            {"name": "market_state", "kind": "market_state", "segment": "main"},
            {"name": "positions", "kind": "positions", "segment": "main"},
            {"name": "control", "kind": "control", "segment": "main"}]

class AgentProcess:
    def __init__(self, layout_path: str, process: str, command: list[str], log_path: str, timeout: float,
                 cwd: str | None = None) -> None:
        from appliance.runtime.counters import ProcessState
        from appliance.runtime.layout import load_layout
        from appliance.runtime.memory import SharedMemory
        from appliance.sim.exchange_process import appliance_env

        self.memory = self.proc = self._log = None
        self.process, self.layout_path, self.log_path = process, layout_path, log_path
        try:
            self.layout = load_layout(layout_path)
            self.memory = SharedMemory.create(self.layout)
            self._log = open(log_path, "wb")
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, env=appliance_env(), cwd=cwd)
            table = self.memory.process_table()
            deadline = time.monotonic() + timeout
            while table.read(process).state is not ProcessState.RUNNING:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the {process} agent exited {self.proc.returncode} before running:\n"
                                       + self.log_tail())
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {process} agent was not running within {timeout:g} s:\n"
                                       + self.log_tail())
                time.sleep(0.01)
        except BaseException:
            self.close()
            raise

    def log_tail(self, lines: int = 10) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                text = fh.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the {self.process} agent exited {self.proc.returncode}:\n" + self.log_tail())

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM (the runner ends its loop and closes the agent), SIGKILL after ``timeout``; the
        exit status, None when it had to be killed."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    def close(self) -> None:
        """Kill the agent if it still runs, reap it, and remove the shared memory (every path ends here)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.memory is not None:
            memory, self.memory = self.memory, None
            memory.remove()
