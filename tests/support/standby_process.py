"""``appliance oms-standby`` as a process for the tests: its log in a file, stopped (killed if need be)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from conftest import ROOT, SUPPORT


class Standby:
    """``appliance oms-standby`` on a layout (``args``: more of its options; ``prefix``: the command it
    runs under, ``ip netns exec NAME``); ``stop`` ends it."""

    def __init__(self, layout_path, log_path, *args, prefix: tuple = ()):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), str(ROOT), env.get("PYTHONPATH", "")])
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "appliance", "oms-standby", "--layout", str(layout_path),
                                      "--status-every", "0.2", *args], env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return open(self.log_path, errors="replace").read()

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode
