"""Network namespaces a test creates, for "another box": ``ip netns`` boxes joined by veth pairs.

``Boxes(prefix)`` makes namespaces named ``<prefix>-<box>-<pid>`` (so runs at the same time never meet)
with loopback up; ``link(a, b, subnet)`` joins two with a veth pair, ``10.77.<subnet>.1/24`` on ``a``'s
end and ``.2`` on ``b``'s (each pair its own subnet: no routing needed); ``exec(box)`` is the command
prefix that runs a program inside one (``ip netns exec`` execs it: the pid is the program's);
``connect_in(box, address)`` a TCP socket of this process made inside a box (a thread that enters the
namespace, connects and ends: the socket stays in that namespace). ``close`` deletes every namespace
(a process still inside keeps its namespace alive: the caller kills those first).
"""
from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import threading

CLONE_NEWNET = 0x40000000


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def netns_permitted() -> str | None:
    """None when this process may add a network namespace; else why not (the test skips saying so)."""
    name = f"tprobe-{os.getpid()}"
    try:
        ip("netns", "add", name)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace here ({exc})"
    ip("netns", "delete", name)
    return None


class Boxes:
    def __init__(self, prefix: str, names: list[str]):
        self.names = {box: f"{prefix}-{box}-{os.getpid()}" for box in names}
        self.made: list[str] = []
        try:
            for netns in self.names.values():
                ip("netns", "add", netns)
                self.made.append(netns)
                ip("-n", netns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def address(self, subnet: int, end: int) -> str:
        return f"10.77.{subnet}.{end}"

    def link(self, a: str, b: str, subnet: int) -> tuple[str, str]:
        """A veth pair between boxes ``a`` and ``b`` (interface ``to-<other>`` in each); their addresses."""
        na, nb = self.names[a], self.names[b]
        ip("-n", na, "link", "add", f"to-{b}", "type", "veth", "peer", "name", f"to-{a}", "netns", nb)
        for netns, other, end in ((na, b, 1), (nb, a, 2)):
            ip("-n", netns, "addr", "add", f"{self.address(subnet, end)}/24", "dev", f"to-{other}")
            ip("-n", netns, "link", "set", f"to-{other}", "up")
        return self.address(subnet, 1), self.address(subnet, 2)

    def link_down(self, box: str, other: str) -> None:
        ip("-n", self.names[box], "link", "set", f"to-{other}", "down")

    def link_up(self, box: str, other: str) -> None:
        ip("-n", self.names[box], "link", "set", f"to-{other}", "up")

    def exec(self, box: str) -> tuple[str, ...]:
        return ("ip", "netns", "exec", self.names[box])

    def delete(self, box: str) -> None:
        """The namespace's name gone (its network lives on while a process is inside it)."""
        netns = self.names[box]
        if netns in self.made:
            self.made.remove(netns)
            ip("netns", "delete", netns)

    def connect_in(self, box: str, address: tuple, timeout: float = 10.0) -> socket.socket:
        """A TCP connection to ``address`` made from inside ``box``."""
        out: list = []

        def run() -> None:
            try:
                fd = os.open(f"/run/netns/{self.names[box]}", os.O_RDONLY)
                try:
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(fd, CLONE_NEWNET) != 0:       # this thread only
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                out.append(socket.create_connection(address, timeout=timeout))
            except BaseException as exc:
                out.append(exc)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(timeout + 5)
        if not out:
            raise TimeoutError(f"connect to {address} in {box}")
        if isinstance(out[0], BaseException):
            raise out[0]
        return out[0]

    def close(self) -> None:
        for box in self.names:
            try:
                self.delete(box)
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                pass
