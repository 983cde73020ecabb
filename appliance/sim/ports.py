"""Free loopback ports for a simulated setup (the sandbox, the benchmarks, the tests)."""
from __future__ import annotations

import socket

from appliance.feed.receiver import set_rcvbuf


def free_ports(count: int = 1, kind: int = socket.SOCK_DGRAM) -> list[int]:
    """``count`` distinct 127.0.0.1 ports the kernel has just handed out (UDP by default, or
    ``socket.SOCK_STREAM``), all bound at once so none repeats, then released for the caller to bind."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, kind)
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """One free 127.0.0.1 port (UDP by default)."""
    return free_ports(1, kind)[0]


def udp_receiver(rcvbuf: int = 32 << 20, *, blocking: bool = False) -> socket.socket:
    """A UDP socket bound to a free 127.0.0.1 port with a ``rcvbuf``-byte receive buffer (the feed
    handler's ``set_rcvbuf``: forced past ``rmem_max`` where allowed): where a simulated exchange
    sends its feed without the receiver losing packets to a short buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        set_rcvbuf(sock, rcvbuf)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(blocking)
    except BaseException:
        sock.close()
        raise
    return sock
