"""A real ptp4l master and slave on a veth pair between two network namespaces the test creates.

Software timestamping (-S), layer 2 (-2), ``free_running 1`` on both: nothing ever adjusts a
clock, the host's included; the slave stays UNCALIBRATED (the guard accepts that only with its
explicit test flag). ``stop_master()`` is how a test loses the grandmaster.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

COMMON = """[global]
free_running 1
logSyncInterval -3
logAnnounceInterval -2
announceReceiptTimeout 3
"""


def available() -> str | None:
    """None when the lab can run here, else why not."""
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ptp4l", "pmc", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian package linuxptp / iproute2)"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class PtpLab:
    def __init__(self) -> None:
        token = uuid.uuid4().hex[:6]
        self.ns_master, self.ns_slave = f"tptpm{token}", f"tptps{token}"
        self.dev_master, self.dev_slave = f"tpm{token}", f"tps{token}"
        self.dir = Path(tempfile.mkdtemp(prefix="ptplab", dir="/tmp"))
        self.master_uds = str(self.dir / "master.sock")
        self.slave_uds = str(self.dir / "slave.sock")
        self.procs: dict[str, subprocess.Popen] = {}
        self._namespaces: list[str] = []
        try:
            for ns in (self.ns_master, self.ns_slave):
                _ip("netns", "add", ns)
                self._namespaces.append(ns)
            _ip("link", "add", self.dev_master, "type", "veth", "peer", "name", self.dev_slave)
            _ip("link", "set", self.dev_master, "netns", self.ns_master)
            _ip("link", "set", self.dev_slave, "netns", self.ns_slave)
            for ns, dev in ((self.ns_master, self.dev_master), (self.ns_slave, self.dev_slave)):
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "link", "set", dev, "up")
            (self.dir / "master.cfg").write_text(COMMON + f"uds_address {self.master_uds}\npriority1 1\n")
            (self.dir / "slave.cfg").write_text(COMMON + f"uds_address {self.slave_uds}\nslaveOnly 1\n")
            self.start_master()
            self._start("slave", self.ns_slave, self.dev_slave)
        except BaseException:
            self.close()
            raise

    def _start(self, role: str, ns: str, dev: str) -> None:
        log = open(self.dir / f"{role}.log", "ab")
        self.procs[role] = subprocess.Popen(
            ["ip", "netns", "exec", ns, "ptp4l", "-f", str(self.dir / f"{role}.cfg"), "-i", dev, "-S", "-2", "-m"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def start_master(self) -> None:
        self._start("master", self.ns_master, self.dev_master)

    def stop_master(self) -> None:
        self._stop("master")

    def _stop(self, role: str) -> None:
        proc = self.procs.pop(role, None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def log(self, role: str) -> str:
        path = self.dir / f"{role}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for role in list(self.procs):
            self._stop(role)
        for ns in self._namespaces:          # deleting a namespace removes its end of the veth pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self._namespaces = []
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PtpLab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
