"""The hot standby as a process (``appliance oms-standby``) beside the OMS as a process, against the
simulated exchange as a process: byte-identical journals, sync waiting for the standby, catch-up
after a cut link, and bad bytes on the replication port."""
from __future__ import annotations

import os
import re
import signal
import socket
import threading

import pytest

from appliance.messages.codes import ExecEvent, OmsReason
from appliance.oms import replication_wire as rw
from appliance.oms.journal_format import read_records
from appliance.oms.recovery import rebuild
from appliance.sim.ports import free_port
from appliance.supervisor.status import build_status, one_line
from conftest import output_of, wait_until
from exchange_process import OrderClient, venue  # noqa: F401  (venue: the fixture)
from standby_process import Standby
from oms_rig import SYMBOLS, Rig, journal_path, oms_layout

E = ExecEvent


class Proxy:
    """A TCP relay between the standby and the primary whose link the test cuts and restores."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self._pairs: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            self._pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._relay, args=(a, b), daemon=True).start()

    @staticmethod
    def _relay(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.close()
            except OSError:
                pass

    def cut(self) -> None:
        self.up.clear()
        for client, server in self._pairs:
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._pairs.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self.listener.close()
        self._thread.join(5)


@pytest.fixture
def pair(venue, write_layout, unique_name, tmp_path, spawner):     # noqa: F811
    """(make, started): ``make(mode, ack_limit_ms, via_proxy)`` -> (rig, standby, proxy)."""
    made: dict = {"rigs": [], "standbys": [], "proxies": []}

    def make(mode: str, ack_limit_ms: int = 300, via_proxy: bool = False, transport: str = "tcp"):
        port = free_port(socket.SOCK_STREAM)
        replication = {"mode": mode, "transport": transport, "primary": {"host": "127.0.0.1", "port": port},
                       "standby_journal": str(tmp_path / "standby" / "journal.bin"), "ack_limit_ms": ack_limit_ms,
                       "heartbeat_ms": 50, "peer_timeout_ms": 5000}
        doc = oms_layout(unique_name, venue.order_entry[1], journal_path(tmp_path), replication=replication)
        rig = Rig(write_layout(doc))
        made["rigs"].append(rig)
        rig.start(spawner)
        standby_layout = rig.layout.path
        proxy = None
        if via_proxy:                      # the standby's copy of the layout names the relay as the primary
            proxy = Proxy(port)
            made["proxies"].append(proxy)
            doc["processes"][-1]["params"]["replication"]["primary"]["port"] = proxy.port
            standby_layout = write_layout(doc, "standby-layout.yaml")
        standby = Standby(standby_layout, tmp_path / f"standby-{len(made['standbys'])}.log")
        made["standbys"].append(standby)
        return rig, standby, proxy

    def again(rig):
        """A new standby process on the rig's layout (after the last one was stopped or killed)."""
        standby = Standby(rig.layout.path, tmp_path / f"standby-{len(made['standbys'])}.log")
        made["standbys"].append(standby)
        return standby
    make.again = again
    yield make
    for standby in made["standbys"]:
        standby.stop()
    for proxy in made["proxies"]:
        proxy.close()
    spawner.cleanup()
    for rig in made["rigs"]:
        rig.close()


def standby_journal(rig: Rig) -> str:
    return rig.layout.processes["oms"].params["replication"]["standby_journal"]


def records_of(path: str):
    if not os.path.exists(path):
        return [], None
    records, found, _header = read_records(path)
    return records, found


def assert_byte_identical(rig: Rig, timeout: float = 20) -> list:
    """Wait until the standby holds every record of the primary's journal: the two files are then the
    same bytes (header, records, zeros after). The primary may append meanwhile (a late record is
    waited for, not a failure). Returns the records."""
    primary, standby = rig.layout.processes["oms"].params["journal"], standby_journal(rig)

    def identical():
        if not os.path.exists(standby):
            return False
        with open(primary, "rb") as a, open(standby, "rb") as b:
            return a.read() == b.read()
    wait_until(identical, timeout, interval=0.05, message="the standby's journal byte-identical to the primary's")
    ours, found = records_of(primary)
    assert ours and found.end > 4096
    return ours


TRANSPORTS = pytest.mark.parametrize("transport", ["tcp", "shm"])


@TRANSPORTS
def test_sync_standby_process_holds_a_byte_identical_journal_and_the_same_order_state(pair, venue,  # noqa: F811
                                                                                       transport):
    rig, standby, _ = pair("sync", transport=transport)
    rig.wait_ready(30)
    other = OrderClient(venue.order_entry, "ALGO2", "secret2")
    try:
        other.enter("S1", "S", 300, "AAPL", 1_900_000)
        rig.new(1, "AAPL", "B", 100, 1_900_000)
        wait_until(lambda: E.EXECUTED in rig.events(1), 10, message="order 1 filled")
        rig.new(2, "MSFT", "B", 200, 4_100_000)
        wait_until(lambda: E.ACCEPTED in rig.events(2), 10, message="order 2 accepted")
        rig.replace(3, orig=2, shares=150, price=4_000_000, symbol="MSFT")
        wait_until(lambda: E.REPLACED in rig.events(3), 10, message="replaced")
        rig.new(4, "SPY", "S", 100, 5_700_000)
        wait_until(lambda: E.ACCEPTED in rig.events(4), 10, message="order 4 accepted")
        rig.cancel(5, orig=4, symbol="SPY", side="S")
        wait_until(lambda: E.CANCELED in rig.events(4), 10, message="order 4 canceled")
        records = assert_byte_identical(rig)
        primary = rebuild(records, SYMBOLS)
        wait_until(lambda: f"records={len(records)}," in standby.log(), 10, message="the standby's state logged")
        line = [x for x in standby.log().splitlines() if f"records={len(records)}," in x][-1]
        assert f"next_sequence_number={primary.next_sequence_number}," in line
        assert f"next_token_counter={primary.next_counter}," in line
        assert f"open_orders={primary.orders.open_orders}," in line and primary.orders.open_orders == 1
        assert rig.counter("oms.replication.connections") == 1 and rig.counter("oms.replication.bad_frames") == 0
        wait_until(lambda: rig.counter("oms.replication.lag_records") == 0 and rig.counter("oms.replication.connected")
                   and rig.counter("oms.replication.acked_sequence") == len(records), 5, message="lag 0 published")
        assert 0 < rig.counter("oms.replication.ack_rtt_ns") < 5_000_000_000
        assert rig.counter("oms.replication.lag_ns") == 0
        status = build_status(rig.layout, rig.memory)           # appliance status: the standby and its lag
        assert status["oms"]["replication"]["connected"] == 1 and status["oms"]["replication"]["lag_records"] == 0
        replication = status["oms"]["replication"]
        assert (replication["role"], replication["mode"], replication["transport"], replication["standby"],
                replication["lag_us"]) == ("primary", "sync", transport, "up", 0)
        assert replication["standby_pid"] == (standby.proc.pid if transport == "shm" else 0)
        pid = f" (pid {standby.proc.pid})" if transport == "shm" else ""
        assert f" | primary sync/{transport}, standby up{pid} lag 0 rec 0.0 us" in one_line(status)
    finally:
        other.close()
    assert standby.stop() == 0
    assert rig.proc.poll() is None, output_of(rig.proc)


@TRANSPORTS
def test_sync_new_orders_wait_for_a_stopped_standby_then_the_gate_closes_and_reopens_when_it_catches_up(
        pair, venue, transport):  # noqa: F811
    rig, standby, _ = pair("sync", ack_limit_ms=300, transport=transport)
    rig.wait_ready(30)
    rig.new(1, "AAPL", "B", 100, 1_800_000)
    wait_until(lambda: E.ACCEPTED in rig.events(1), 10, message="order 1 accepted")
    standby.proc.send_signal(signal.SIGSTOP)           # alive, connected, silent: no acknowledgement
    try:
        rig.new(2, "AAPL", "B", 100, 1_800_000)
        wait_until(lambda: E.REJECTED_LOCALLY in rig.events(2), 10, message="order 2 given back")
        assert rig.reports_of(2)[-1]["reason"] == OmsReason.NOT_SENT   # held, never sent
        assert E.ACCEPTED not in rig.events(2)
        wait_until(lambda: rig.control.get("oms_ready") == 0, 5, message="the gate closed")
        assert re.search(r" \| primary sync/\w+, standby up.* lag \d+ rec",           # connected, not answering
                         one_line(build_status(rig.layout, rig.memory)))
        rig.new(3, "AAPL", "B", 100, 1_800_000)
        wait_until(lambda: E.REJECTED_LOCALLY in rig.events(3), 10, message="order 3 refused")
        assert rig.reports_of(3)[-1]["reason"] == OmsReason.NO_STANDBY
        rig.cancel(4, orig=1)                           # cancels still leave
        wait_until(lambda: E.CANCELED in rig.events(1), 10, message="order 1 canceled without the standby")
    finally:
        standby.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: rig.control.get("oms_ready") == 1, 10, message="the gate reopened")
    rig.new(5, "AAPL", "B", 100, 1_800_000)
    wait_until(lambda: E.ACCEPTED in rig.events(5), 10, message="order 5 accepted")
    assert rig.counter("oms.replication.ack_timeouts") >= 1
    assert_byte_identical(rig)


def test_async_standby_catches_up_after_a_cut_link(pair, venue):  # noqa: F811
    rig, standby, proxy = pair("async", via_proxy=True)
    rig.wait_ready(30)
    rig.new(1, "AAPL", "B", 100, 1_800_000)
    wait_until(lambda: E.ACCEPTED in rig.events(1), 10, message="order 1 accepted")
    assert_byte_identical(rig)
    proxy.cut()
    for i in range(2, 12):                             # async: trading goes on without the standby
        rig.new(i, SYMBOLS[i % 3], "B", 100, 1_800_000)
    wait_until(lambda: all(E.ACCEPTED in rig.events(i) for i in range(2, 12)), 10, message="orders accepted")
    before, _ = records_of(standby_journal(rig))
    ours, _ = records_of(rig.layout.processes["oms"].params["journal"])
    assert len(before) < len(ours)
    proxy.restore()
    assert_byte_identical(rig)
    asked = [int(n) for n in re.findall(r"asking from sequence (\d+)", standby.log())]
    assert asked[0] == 1 and asked[-1] == len(before) + 1          # caught up from where it was, not again
    wait_until(lambda: rig.counter("oms.replication.connections") >= 2, 5, message="the reconnection counted")


def test_primary_replicates_from_a_primary_the_layout_does_not_name(pair, venue, tmp_path):  # noqa: F811
    """``--primary HOST:PORT`` (box A attaching as the standby of box B's new primary after a takeover from
    another box): the standby's layout names a relay that is gone; given the primary's own address, the
    standby catches up from where its journal ends, byte for byte."""
    rig, standby, proxy = pair("async", via_proxy=True)
    rig.wait_ready(30)
    rig.new(1, "AAPL", "B", 100, 1_800_000)
    assert_byte_identical(rig)
    standby.stop()
    proxy.close()                                      # the address the standby's layout names: nothing there
    for i in range(2, 6):
        rig.new(i, SYMBOLS[i % 3], "B", 100, 1_800_000)
    wait_until(lambda: all(E.ACCEPTED in rig.events(i) for i in range(2, 6)), 10, message="orders accepted")
    port = rig.layout.processes["oms"].params["replication"]["primary"]["port"]
    direct = Standby(tmp_path / "standby-layout.yaml", tmp_path / "direct.log", "--primary", f"127.0.0.1:{port}")
    try:
        assert_byte_identical(rig)
        assert f"connected to the primary at 127.0.0.1:{port}" in direct.log()
    finally:
        direct.stop()


def test_bad_bytes_on_the_replication_port_are_counted_and_dropped(pair, venue):  # noqa: F811
    rig, standby, _ = pair("sync")
    rig.wait_ready(30)
    port = rig.layout.processes["oms"].params["replication"]["primary"]["port"]
    assert_byte_identical(rig)
    attacks = [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", (1 << 30).to_bytes(4, "little") + b"S",
               rw.ack(1), rw.frame(rw.SUBSCRIBE, b"short"), os.urandom(4096)]
    for attack in attacks:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(attack)
            s.settimeout(5)
            try:
                assert s.recv(100) == b""                   # closed by the OMS, nothing said
            except ConnectionResetError:
                pass
    wait_until(lambda: rig.counter("oms.replication.refused_connections") >= len(attacks), 5,
               message="every bad connection counted")
    assert rig.counter("oms.replication.bad_frames") >= len(attacks)
    rig.new(1, "AAPL", "B", 100, 1_800_000)             # the standby streams on, untouched
    wait_until(lambda: E.ACCEPTED in rig.events(1), 10, message="order 1 accepted")
    assert rig.counter("oms.replication.connections") == 1
    assert_byte_identical(rig)
    assert rig.proc.poll() is None


@TRANSPORTS
def test_the_standby_follows_a_primary_restarted_after_sigkill(pair, venue, spawner, transport):  # noqa: F811
    rig, standby, _ = pair("sync", transport=transport)
    rig.wait_ready(30)
    rig.new(1, "AAPL", "B", 100, 1_800_000)
    wait_until(lambda: E.ACCEPTED in rig.events(1), 10, message="order 1 accepted")
    assert_byte_identical(rig)
    rig.proc.send_signal(signal.SIGKILL)
    rig.proc.wait(10)
    rig.start(spawner)                                  # today's restart: the same journal, recovered from it
    rig.wait_ready(30)                                  # sync: ready once the standby has caught up again
    rig.new(2, "AAPL", "B", 100, 1_800_000)
    wait_until(lambda: E.ACCEPTED in rig.events(2), 10, message="order 2 accepted")
    records = assert_byte_identical(rig)
    asked = [int(n) for n in re.findall(r"asking from sequence (\d+)", standby.log())]
    assert asked[0] == 1 and asked[-1] > 1                # it went on from its last record: nothing copied twice
    assert "archived" not in standby.log()
    assert len(records) == len(records_of(standby_journal(rig))[0])


def test_shm_a_killed_standby_trips_sync_at_once_and_a_new_one_catches_up_and_reopens_the_gate(
        pair, venue):  # noqa: F811
    """Same box, the link cut: the standby process SIGKILLed (its pid gone: the OMS drops it without
    waiting for a heartbeat timeout). Sync orders wait, then the gate closes (NO_STANDBY), cancels
    leave; a new standby asks from its last record, catches up, the gate reopens."""
    rig, standby, _ = pair("sync", ack_limit_ms=300, transport="shm")
    rig.wait_ready(30)
    rig.new(1, "AAPL", "B", 100, 1_800_000)
    wait_until(lambda: E.ACCEPTED in rig.events(1), 10, message="order 1 accepted")
    assert_byte_identical(rig)
    standby.proc.send_signal(signal.SIGKILL)
    standby.stop()
    wait_until(lambda: rig.counter("oms.replication.connected") == 0, 5, message="the OMS saw the standby gone")
    rig.new(2, "AAPL", "B", 100, 1_800_000)
    wait_until(lambda: E.REJECTED_LOCALLY in rig.events(2), 10, message="order 2 refused")
    assert rig.reports_of(2)[-1]["reason"] in (OmsReason.NOT_SENT, OmsReason.NO_STANDBY)
    wait_until(lambda: rig.control.get("oms_ready") == 0, 5, message="the gate closed")
    assert " | primary sync/shm, standby DOWN lag " in one_line(build_status(rig.layout, rig.memory))
    rig.cancel(3, orig=1)                               # cancels still leave
    wait_until(lambda: E.CANCELED in rig.events(1), 10, message="order 1 canceled without the standby")
    before, _ = records_of(standby_journal(rig))
    standby = pair.again(rig)
    wait_until(lambda: rig.control.get("oms_ready") == 1, 15, message="the gate reopened")
    rig.new(4, "AAPL", "B", 100, 1_800_000)
    wait_until(lambda: E.ACCEPTED in rig.events(4), 10, message="order 4 accepted")
    assert_byte_identical(rig)
    asked = [int(n) for n in re.findall(r"asking from sequence (\d+)", standby.log())]
    assert asked[0] == len(before) + 1                  # from where the killed one stopped, not again
    assert rig.counter("oms.replication.bad_frames") == 0 and rig.proc.poll() is None


def test_tcp_sync_link_cut_orders_wait_then_the_gate_closes_and_the_restored_link_catches_up(
        pair, venue):  # noqa: F811
    """Another box, the link cut (the relay shuts both sockets and refuses new ones): a sync order
    waits for the limit and is given back, the gate closes (NO_STANDBY), cancels leave; the link
    restored, the standby reconnects, asks from its last record, catches up, the gate reopens."""
    rig, standby, proxy = pair("sync", ack_limit_ms=300, via_proxy=True)
    rig.wait_ready(30)
    rig.new(1, "AAPL", "B", 100, 1_800_000)
    wait_until(lambda: E.ACCEPTED in rig.events(1), 10, message="order 1 accepted")
    assert_byte_identical(rig)
    proxy.cut()
    rig.new(2, "AAPL", "B", 100, 1_800_000)
    wait_until(lambda: E.REJECTED_LOCALLY in rig.events(2), 10, message="order 2 given back")
    assert rig.reports_of(2)[-1]["reason"] in (OmsReason.NOT_SENT, OmsReason.NO_STANDBY)
    assert E.ACCEPTED not in rig.events(2)
    wait_until(lambda: rig.control.get("oms_ready") == 0, 5, message="the gate closed")
    rig.cancel(3, orig=1)                               # cancels still leave
    wait_until(lambda: E.CANCELED in rig.events(1), 10, message="order 1 canceled without the standby")
    before, _ = records_of(standby_journal(rig))
    proxy.restore()
    wait_until(lambda: rig.control.get("oms_ready") == 1, 15, message="the gate reopened")
    rig.new(4, "AAPL", "B", 100, 1_800_000)
    wait_until(lambda: E.ACCEPTED in rig.events(4), 10, message="order 4 accepted")
    assert_byte_identical(rig)
    asked = [int(n) for n in re.findall(r"asking from sequence (\d+)", standby.log())]
    assert asked[0] == 1 and asked[-1] == len(before) + 1
    assert rig.counter("oms.replication.ack_timeouts") >= 1 and rig.proc.poll() is None
