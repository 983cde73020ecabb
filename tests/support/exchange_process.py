"""Test harness for the simulated exchange as a process: start it, talk to it, stop it, clean up.

``RunningExchange`` writes a config, binds the feed socket the exchange will send to, starts
the exchange through the one launcher (``appliance.sim.exchange_process``) and waits for its
``exchange ready`` line. ``MoldConsumer`` is a small independent MoldUDP64 receiver that recovers gaps
through the re-request server; ``OrderClient`` is a blocking SoupBinTCP/OUCH client.
"""
from __future__ import annotations

import json
import select
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from appliance.exchange.records import read_ouch_log
from appliance.sim.exchange_process import ExchangeProcess
from appliance.sim.ports import udp_receiver
from appliance.wire import moldudp64, ouch, soupbintcp


def base_config(**sections) -> dict:
    """A small exchange document: three symbols, two firms, quiet background, fast heartbeats."""
    doc = {
        "version": 1,
        "symbols": [{"symbol": "AAPL", "reference_price": 1_900_000}, {"symbol": "MSFT", "reference_price": 4_200_000},
                    {"symbol": "SPY", "reference_price": 5_600_000}],
        "firms": [{"username": "ALGO1", "password": "secret1", "mpid": "ALGO"},
                  {"username": "ALGO2", "password": "secret2", "mpid": "ALG2"}],
        "order_entry": {"host": "127.0.0.1", "port": 0, "heartbeat_interval_ms": 100, "peer_timeout_ms": 1000},
        "market_data": {"session": "TEST000001", "subscribers": [], "rerequest_port": 0, "source_port": 0,
                        "snapshot_port": 0,
                        "heartbeat_interval_ms": 100},
        "background": {"enabled": False, "rate": 0, "seed": 11},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(doc.get(name), dict):
            doc[name] = {**doc[name], **value}
        else:
            doc[name] = value
    return doc


class RunningExchange:
    def __init__(self, document: dict, *, records: bool = True, extra_args: tuple = (), rcvbuf: int = 32 << 20,
                 extra_subscribers=(), prefix: tuple = ()) -> None:
        """``extra_subscribers``: more 127.0.0.1 ports the feed is sent to (a feed handler under test);
        ``prefix``: the command the exchange runs under (``ip netns exec NAME``: in a network namespace,
        where the feed to this process's 127.0.0.1 goes nowhere and the control socket still works)."""
        self.dir = Path(tempfile.mkdtemp(prefix="exch", dir="/tmp"))    # short: UNIX socket paths are limited
        self.feed = udp_receiver(rcvbuf, blocking=True)
        self.feed_address = self.feed.getsockname()
        document = json.loads(json.dumps(document))
        document.setdefault("market_data", {})["subscribers"] = [f"127.0.0.1:{self.feed_address[1]}"] + \
            [f"127.0.0.1:{port}" for port in extra_subscribers]
        document["control"] = {"socket": str(self.dir / "ctl.sock")}
        if records:
            document["records"] = {"directory": str(self.dir / "records")}
        self.control_path = str(self.dir / "ctl.sock")
        self.records = self.dir / "records"
        self.config_path = self.dir / "exchange.yaml"
        self.config_path.write_text(yaml.safe_dump(document, sort_keys=False))
        self.process = ExchangeProcess(["--config", str(self.config_path), "--linger", "0.2", *extra_args],
                                       prefix=prefix)
        self.proc = self.process.proc
        self.lines = self.process.lines
        try:
            self.ports = self.process.wait_ready(20.0)
        except RuntimeError as exc:
            self.close()
            raise AssertionError(str(exc)) from None
        self.order_entry = self.ports["order_entry"]
        self.rerequest = self.ports["rerequest"]
        self.source = self.ports["source"]          # where the market data comes from
        self.snapshot = self.ports["snapshot"]

    def ctl(self, command: str, **arguments) -> dict:
        from appliance.command_io.json_lines import request_json
        return request_json(self.control_path, {"command": command, **arguments}, 30, "the exchange")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the exit status."""
        return self.process.stop(timeout)

    def output(self) -> str:
        return self.process.output()

    def close(self) -> None:
        self.process.close()
        self.feed.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "RunningExchange":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MoldConsumer:
    """Receives a MoldUDP64 stream in order: duplicates dropped, gaps re-requested (retried)."""

    def __init__(self, sock: socket.socket, rerequest: tuple, session: str = "") -> None:
        self.sock = sock
        self.rerequest = rerequest
        self.session = session
        self.next_sequence = 1
        self.messages: list[bytes] = []
        self.pending: dict[int, bytes] = {}          # sequence -> message, received ahead of a gap
        self.ended = False
        self.packets = self.duplicates = self.requests = self.gaps = self.heartbeats = 0
        self._last_request = 0.0
        self._known_next = 1                         # from heartbeats and end of session
        self._buffer = bytearray(65536)
        self._request_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._request_sock.bind(("127.0.0.1", 0))

    def close(self) -> None:
        self._request_sock.close()

    @property
    def highest_seen(self) -> int:
        return max([self.next_sequence - 1, *self.pending]) if self.pending else self.next_sequence - 1

    def pump(self, timeout: float = 0.05) -> None:
        ready, _, _ = select.select([self.sock, self._request_sock], [], [], timeout)
        for sock in ready:
            while True:
                try:
                    n = sock.recv_into(self._buffer, 65536, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                self._packet(bytes(self._buffer[:n]))
        self._request_missing()

    def _packet(self, data: bytes) -> None:
        packet = moldudp64.decode_packet(data)
        self.packets += 1
        if not self.session:
            self.session = packet.session
        if packet.is_end_of_session:
            self.ended = True
            self._known_next = max(self._known_next, packet.sequence_number)
            return
        if packet.is_heartbeat:
            self.heartbeats += 1
            # a heartbeat carries the next sequence number: everything before it exists
            self._known_next = max(self._known_next, packet.sequence_number)
            return
        sequence = packet.sequence_number
        for message in packet.messages:
            if sequence < self.next_sequence or sequence in self.pending:
                self.duplicates += 1
            else:
                self.pending[sequence] = message
            sequence += 1
        while self.next_sequence in self.pending:
            self.messages.append(self.pending.pop(self.next_sequence))
            self.next_sequence += 1

    def _target(self) -> int:
        """The highest sequence number known to exist."""
        return max(self.highest_seen, self._known_next - 1)

    def _request_missing(self) -> None:
        if self._target() < self.next_sequence:
            return
        now = time.monotonic()
        if now - self._last_request < 0.05:
            return
        self._last_request = now
        missing_end = min([s for s in self.pending] or [self._target() + 1])
        count = min(missing_end - self.next_sequence, 500)
        if count <= 0:
            return
        self.gaps += 1
        self.requests += 1
        self._request_sock.sendto(moldudp64.request(self.session, self.next_sequence, count), self.rerequest)

    def receive_until(self, count: int, timeout: float) -> list[bytes]:
        """Pump until ``count`` messages are in order; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"received {len(self.messages)} of {count} messages in order "
                                     f"({len(self.pending)} pending, {self.requests} requests)")
            self.pump()
        return self.messages


class OrderClient:
    """A blocking SoupBinTCP client speaking OUCH, for tests."""

    def __init__(self, address: tuple, username: str, password: str, sequence: int = 1, *, timeout: float = 10.0,
                 connect=socket.create_connection) -> None:
        """``connect(address, timeout=)``: the connected socket (another network namespace's: ``netns.connect_in``)."""
        self.sock = connect(address, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = soupbintcp.PacketReader()
        self.sock.sendall(soupbintcp.login_request(username, password, "", sequence))
        self.login = self.next_packet()
        self.timeout = timeout

    def next_packet(self, timeout: float | None = None) -> dict | None:
        """The next packet other than a heartbeat, decoded; None when the server closed the connection."""
        deadline = time.monotonic() + (timeout or 10.0)
        while True:
            found = self.reader.next_packet()
            if found is not None:
                layout, offset, length = found
                packet = soupbintcp.decode_packet(self.reader.buffer, offset, length + 2)
                if packet["packet_type"] != "H":
                    return packet
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no packet from the exchange in time")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.reader.feed(data)

    def next_message(self, timeout: float | None = None) -> dict:
        """The next sequenced OUCH message, decoded."""
        packet = self.next_packet(timeout)
        assert packet is not None and packet["packet_type"] == "S", packet
        return ouch.decode_outbound(packet["message"])

    def send(self, fields: dict) -> None:
        self.sock.sendall(soupbintcp.unsequenced_data(ouch.encode_inbound(fields)))

    def send_raw(self, message: bytes) -> None:
        self.sock.sendall(soupbintcp.unsequenced_data(message))

    def enter(self, token: str, side: str, shares: int, stock: str, price: int, tif: int = 99998) -> None:
        self.send({"type": "O", "order_token": token, "buy_sell_indicator": side, "shares": shares, "stock": stock,
                   "price": price, "time_in_force": tif, "firm": "", "display": "Y", "capacity": "A",
                   "intermarket_sweep_eligibility": "N", "minimum_quantity": 0, "cross_type": "N",
                   "customer_type": "R"})

    def cancel(self, token: str, shares: int = 0) -> None:
        self.send({"type": "X", "order_token": token, "shares": shares})

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def venue():
    """The simulated exchange as a process on the default configuration, stopped after the test."""
    exchange = RunningExchange(base_config())
    try:
        yield exchange
    finally:
        exchange.close()


def end_of_day(exchange: RunningExchange) -> dict:
    """End the exchange's day, stop it, and return its end-of-day report."""
    exchange.ctl("end")
    assert exchange.stop() == 0, exchange.output()
    return json.loads((exchange.records / "report.json").read_text())


def venue_messages(exchange: RunningExchange, firm: str = "ALGO1") -> tuple[list[dict], list[dict]]:
    """(inbound, outbound) OUCH messages of a firm, from the exchange's own log."""
    inbound, outbound = [], []
    for record in read_ouch_log(exchange.records / f"ouch-{firm}.log"):
        if record.direction == "I":
            inbound.append(ouch.decode_inbound(record.message))
        else:
            outbound.append(ouch.decode_outbound(record.message))
    return inbound, outbound
