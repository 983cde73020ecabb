"""Free loopback ports and the feed receiver socket of the simulated setup."""
from __future__ import annotations

import socket

from appliance.sim.ports import free_port, free_ports, udp_receiver


def test_free_ports_are_distinct_and_bindable_for_udp_and_tcp():
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        ports = free_ports(4, kind)
        assert len(set(ports)) == 4 and all(p > 0 for p in ports)
        socks = [socket.socket(socket.AF_INET, kind) for _ in ports]
        try:
            for sock, port in zip(socks, ports):
                sock.bind(("127.0.0.1", port))
        finally:
            for sock in socks:
                sock.close()
    assert free_port() > 0


def test_the_udp_receiver_is_bound_on_loopback_with_a_large_buffer_and_receives():
    with udp_receiver(4 << 20) as receiver, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        host, port = receiver.getsockname()
        assert host == "127.0.0.1" and port > 0 and receiver.getblocking() is False
        assert receiver.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= 4 << 20    # not the default (~416 KiB)
        sender.sendto(b"ping", (host, port))
        receiver.settimeout(10)
        assert receiver.recv(16) == b"ping"
