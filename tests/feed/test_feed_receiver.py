"""UdpReceiver and RerequestChannel on loopback; the multicast path inside a private network namespace."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from appliance.feed import receiver as receiver_module
from appliance.feed.receiver import SO_TIMESTAMPNS, STAT_NAMES, RerequestChannel, UdpReceiver
from appliance.wire import moldudp64 as mold

ROOT = Path(__file__).resolve().parents[2]
COMPILED = receiver_module._Receiver is not None


@pytest.fixture(autouse=True, params=["c", "python"])
def receive_path(request, monkeypatch):
    """Every test on both receives: the compiled one (the default when built) and the Python reference."""
    if request.param == "c" and not COMPILED:
        pytest.skip("appliance.feed._book_fast is not built")
    if request.param == "python":
        monkeypatch.setattr(receiver_module, "_Receiver", None)
    return request.param


def receive_within(receiver, timeout: float = 2.0) -> int:
    """Poll the non-blocking receiver until a datagram arrives (or fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        n = receiver.receive()
        if n >= 0:
            return n
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing received within {timeout} s")
        time.sleep(0.0005)


@pytest.fixture
def sender():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s


def test_unicast_packets_arrive_with_size_and_kernel_timestamp(sender):
    assert SO_TIMESTAMPNS == 35
    with UdpReceiver("127.0.0.1", 0, source=sender.getsockname()) as receiver:
        host, port = receiver.address
        assert host == "127.0.0.1" and port > 0
        if os.geteuid() == 0:
            assert receiver.rcvbuf_effective >= 4 << 20      # SO_RCVBUFFORCE: past rmem_max
        assert receiver.rcvbuf_effective > 0
        assert receiver.receive() == -1                        # nothing waiting: never blocks
        buffer_id = id(receiver.buffer)
        for index, payload in enumerate([mold.heartbeat("S", 1), mold.pack_messages("S", 1, [b"abc", b"de"])[0]]):
            before = time.time_ns()
            sender.sendto(payload, receiver.address)
            n = receive_within(receiver)
            after = time.time_ns()
            assert n == len(payload) and bytes(receiver.buffer[:n]) == payload
            assert before <= receiver.rx_ns <= after, (before, receiver.rx_ns, after)
            assert receiver.source == sender.getsockname()
            assert receiver.packets == index + 1
        assert receiver.bytes == 20 + 20 + 2 + 3 + 2 + 2
        assert id(receiver.buffer) == buffer_id                # received in place
        assert receiver.missing_timestamps == 0 and receiver.truncated == 0 and receiver.errors == 0
        assert receiver.receive() == -1
        assert receiver.fileno() >= 0


def test_the_receiver_takes_the_path_asked_for(receive_path, sender):
    with UdpReceiver("127.0.0.1", 0, source=sender.getsockname()) as receiver:
        assert receiver.uses_c == (receive_path == "c")
    with UdpReceiver("127.0.0.1", 0, source=sender.getsockname(), use_c=False) as receiver:
        assert not receiver.uses_c and receiver.receive == receiver._receive_python
    if receive_path == "python":
        with pytest.raises(RuntimeError, match="not built"):
            UdpReceiver("127.0.0.1", 0, source=sender.getsockname(), use_c=True)


@pytest.mark.skipif(not COMPILED, reason="appliance.feed._book_fast is not built")
def test_compiled_and_python_receives_agree(sender, receive_path):
    """The same datagrams (the publisher's, strangers', an oversized one, empty ones) to a C and a Python
    receiver: the same sizes, bytes and every stat but the kernel's timestamps."""
    if receive_path == "python":
        pytest.skip("one run compares both")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger, \
            UdpReceiver("127.0.0.1", 0, source=sender.getsockname(), buffer_size=64, use_c=True) as c, \
            UdpReceiver("127.0.0.1", 0, source=sender.getsockname(), buffer_size=64, use_c=False) as py:
        stranger.bind(("127.0.0.1", 0))
        traffic = [(sender, b"a" * 20), (stranger, b"forged"), (sender, b""), (sender, b"x" * 200),
                   (stranger, b"z"), (stranger, b"z"), (sender, mold.heartbeat("S", 1))]
        got = {"c": [], "py": []}
        for who, payload in traffic:
            for name, receiver in (("c", c), ("py", py)):
                who.sendto(payload, receiver.address)
                if who is sender:
                    n = receive_within(receiver)
                    got[name].append((n, bytes(receiver.buffer[:n]), receiver.source))
        for name, receiver in (("c", c), ("py", py)):
            deadline = time.monotonic() + 2
            while receiver.foreign < 3 and time.monotonic() < deadline:
                receiver.receive()
        assert got["c"] == got["py"] and len(got["c"]) == 4
        rx = STAT_NAMES.index("rx_ns")
        assert [v for i, v in enumerate(c._stats) if i != rx] == [v for i, v in enumerate(py._stats) if i != rx]
        assert c.foreign == 3 and c.truncated == 1 and c.last_foreign == stranger.getsockname() and c.rx_ns > 0
    c.close()
    assert c.receive() == -1 and c.errors == 1


def test_datagram_larger_than_the_buffer_is_counted_truncated(sender):
    with UdpReceiver("127.0.0.1", 0, source=sender.getsockname(), buffer_size=64) as receiver:
        sender.sendto(b"x" * 200, receiver.address)
        assert receive_within(receiver) == 64                  # the caller sees a packet that does not parse
        assert receiver.truncated == 1 and receiver.packets == 1
        sender.sendto(b"y" * 10, receiver.address)
        assert receive_within(receiver) == 10 and receiver.truncated == 1


def test_receive_on_a_closed_socket_counts_an_error_and_does_not_raise():
    receiver = UdpReceiver("127.0.0.1", 0, source=("127.0.0.1", None))
    receiver.close()
    assert receiver.receive() == -1 and receiver.errors == 1


def test_only_the_publisher_is_read_every_other_sender_is_counted_foreign(sender):
    """Any local process can send to the feed's port: only the configured source comes out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger, \
            UdpReceiver("127.0.0.1", 0, source=sender.getsockname()) as receiver:
        stranger.bind(("127.0.0.1", 0))
        for _ in range(3):
            stranger.sendto(mold.pack_messages("S", 1, [b"forged"])[0], receiver.address)
        sender.sendto(b"publisher", receiver.address)
        assert receive_within(receiver) == 9 and bytes(receiver.buffer[:9]) == b"publisher"
        assert receiver.foreign == 3 and receiver.packets == 1 and receiver.bytes == 9
        assert receiver.last_foreign == stranger.getsockname()
        stranger.sendto(b"alone", receiver.address)          # a lone stranger: nothing comes out
        deadline = time.monotonic() + 2
        while receiver.foreign < 4 and time.monotonic() < deadline:
            assert receiver.receive() == -1
        assert receiver.foreign == 4 and receiver.packets == 1
    # the publisher's address without a port: any port of that host, no other host
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other_host, \
            UdpReceiver("127.0.0.1", 0, source=("127.0.0.1", None)) as receiver:
        other_host.bind(("127.0.0.2", 0))
        other_host.sendto(b"other host", receiver.address)
        sender.sendto(b"any port", receiver.address)
        assert receive_within(receiver) == 8 and receiver.foreign == 1
        assert receiver.last_foreign[0] == "127.0.0.2"


def test_rerequest_channel_sends_requests_and_receives_only_the_servers_answers(sender):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(2.0)
        with RerequestChannel("127.0.0.1", server.getsockname()[1]) as channel:
            assert channel.server == server.getsockname()
            assert channel.address[0] == "127.0.0.1" and channel.address[1] > 0
            assert channel.receive() == -1
            assert channel.send(mold.request("S", 5, 3)) is True and channel.sent == 1
            data, requester = server.recvfrom(100)
            assert mold.decode_request(data) == ("S", 5, 3)
            assert requester == channel.address
            # a stranger's datagram first, then the server's answer: only the answer comes out
            sender.sendto(mold.pack_messages("S", 5, [b"evil"])[0], channel.address)
            answer = mold.pack_messages("S", 5, [b"m5", b"m6", b"m7"])[0]
            before = time.time_ns()
            server.sendto(answer, requester)
            n = receive_within(channel)
            after = time.time_ns()
            assert n == len(answer) and bytes(channel.buffer[:n]) == answer
            assert channel.source == server.getsockname() and channel.foreign == 1 and channel.packets == 1
            assert before <= channel.rx_ns <= after
            # a lone stranger's datagram: dropped, nothing returned
            sender.sendto(b"noise", channel.address)
            deadline = time.monotonic() + 2
            while channel.foreign < 2 and time.monotonic() < deadline:
                assert channel.receive() == -1
            assert channel.foreign == 2 and channel.packets == 1


def test_rerequest_send_failure_is_counted_not_raised():
    channel = RerequestChannel("127.0.0.1", 9)
    channel.close()
    assert channel.send(mold.request("S", 1, 1)) is False and channel.send_errors == 1


# ------------------------------------------------------------------ multicast in a private network namespace

CHILD = textwrap.dedent("""
    import json, socket, time
    from appliance.feed.receiver import UdpReceiver

    GROUP = "239.1.1.1"

    def multicast_sender(host):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        return s

    out = multicast_sender("127.0.0.1")                    # the publisher
    receiver = UdpReceiver("", 0, source=out.getsockname(), multicast_group=GROUP, interface="127.0.0.1")
    port = receiver.address[1]
    # strangers: another host (the source-specific join keeps it out in the kernel) and another port of
    # the publisher's host (our per-datagram check counts it foreign)
    multicast_sender("127.0.0.2").sendto(b"other host", (GROUP, port))
    multicast_sender("127.0.0.1").sendto(b"other port", (GROUP, port))
    # a unicast datagram to the same port on 127.0.0.1 must not reach the group's socket
    stray = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stray.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    stray.bind(("127.0.0.1", port))
    out.sendto(b"unicast", ("127.0.0.1", port))
    received = []
    for payload in (b"first", b"second"):
        before = time.time_ns()
        out.sendto(payload, (GROUP, port))
        deadline = time.monotonic() + 2
        n = -1
        while n < 0 and time.monotonic() < deadline:
            n = receiver.receive()
        after = time.time_ns()
        received.append({"n": n, "data": bytes(receiver.buffer[:max(n, 0)]).decode(),
                         "rx_in_window": before <= receiver.rx_ns <= after})
    print(json.dumps({"address": list(receiver.address), "received": received, "extra": receiver.receive(),
                      "packets": receiver.packets, "missing_timestamps": receiver.missing_timestamps,
                      "foreign": receiver.foreign}))
""")


def test_multicast_group_on_loopback_in_a_private_namespace(tmp_path):
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if unshare is None or ip is None:
        pytest.skip("needs unshare(1) and ip(8) to build a private network namespace")
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"unshare -n not permitted here (needs root or user namespaces): {probe.stderr.decode().strip()}")
    script = tmp_path / "multicast_child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    # inside the new namespace only: loopback up, multicast routed to it
    shell = (f"{ip} link set lo up && {ip} route add 224.0.0.0/4 dev lo && "
             f'exec "{sys.executable}" "{script}"')
    proc = subprocess.run([unshare, "-n", "sh", "-c", shell], capture_output=True, timeout=30, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    result = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert result["address"][0] == "239.1.1.1" and result["address"][1] > 0
    assert [r["data"] for r in result["received"]] == ["first", "second"]
    assert [r["n"] for r in result["received"]] == [5, 6]
    assert all(r["rx_in_window"] for r in result["received"])
    assert result["extra"] == -1 and result["packets"] == 2 and result["missing_timestamps"] == 0
    assert result["foreign"] == 1          # the other port; the other host never reached the socket
