"""Cancel on disconnect, per firm: when a logged-in firm's order-entry session is lost for any reason, the
venue cancels every open order of that firm (OUCH Canceled reason 'Z', system cancel), the feed deletes the
displayed ones, the firm's re-login replay tells it, and the day's report agrees. Off (the default), the
orders stay resting."""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading

import pytest

from appliance.wire import itch, soupbintcp
from conftest import ROOT, SUPPORT, wait_until
from exchange_process import MoldConsumer, OrderClient, RunningExchange, base_config
from firm_orders import place_orders

CANCEL_SYSTEM = "Z"
FIRMS = [{"username": "ALGO1", "password": "secret1", "mpid": "ALGO", "cancel_on_disconnect": True},
         {"username": "ALGO2", "password": "secret2", "mpid": "ALG2"}]          # ALGO2: off, by default
# The test clients do not heartbeat: a session must end only the way a test ends it, however slow a
# loaded machine makes the steps in between (the peer-timeout case keeps its clients alive instead).
LONG_PEER_TIMEOUT = {"heartbeat_interval_ms": 100, "peer_timeout_ms": 60_000}


@pytest.fixture
def exchange():
    running = []

    def start(document=None, **kw):
        ex = RunningExchange(document or base_config(firms=FIRMS, order_entry=LONG_PEER_TIMEOUT), **kw)
        running.append(ex)
        return ex
    yield start
    for ex in running:
        ex.close()


# A client in its own process, killed with SIGKILL like a crashed OMS: it places the orders, says so, and
# then waits on stdin (it is killed while it waits).
KILLED_CLIENT = textwrap.dedent("""
    import json, sys
    from exchange_process import OrderClient
    from firm_orders import place_orders
    client = OrderClient(("{host}", {port}), "ALGO1", "secret1")
    print(json.dumps(place_orders(client)), flush=True)
    sys.stdin.read()
""")


class _SerialSocket:
    """A client's socket whose sendall() takes a lock, so a heartbeat thread and the test never interleave."""

    def __init__(self, sock: socket.socket, lock: threading.Lock) -> None:
        self._sock, self._lock = sock, lock

    def sendall(self, data) -> None:
        with self._lock:
            self._sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class KeptAlive:
    """Client heartbeats every 100 ms for `clients` until stop(): they stay logged in until the test says."""

    def __init__(self, *clients: OrderClient) -> None:
        self.clients = clients
        for client in clients:
            client.sock = _SerialSocket(client.sock, threading.Lock())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for client in self.clients:
                try:
                    client.sock.sendall(soupbintcp.CLIENT_HEARTBEAT_BYTES)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def lose_the_session(how: str, ex: RunningExchange, client: OrderClient | None, child) -> None:
    if how == "close":                  # an orderly close: FIN, and the exchange closes its side (unread data
        client.sock.shutdown(socket.SHUT_WR)            # at close() would make the kernel send a reset)
        assert client.next_packet() is None
        client.close()
    elif how == "reset":
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
    elif how == "killed":
        child.kill()
        child.wait(10)
    elif how == "ctl-disconnect":
        assert ex.ctl("disconnect", firm="ALGO1") == {"ok": True, "disconnected": True}
    elif how == "logout":
        client.sock.sendall(soupbintcp.LOGOUT_REQUEST_BYTES)
        assert client.next_packet() is None                 # the exchange closes the connection
    else:
        assert how == "peer-timeout"                        # silent: no heartbeats for peer_timeout_ms (1 s)


WHY = {"close": "connection closed", "reset": "connection reset", "killed": "", "ctl-disconnect": "disconnect command",
       "logout": "logout", "peer-timeout": "peer timeout"}


@pytest.mark.parametrize("how", list(WHY))
def test_a_lost_session_cancels_every_open_order_of_the_firm(exchange, how):
    timeouts = {"heartbeat_interval_ms": 100, "peer_timeout_ms": 1500} if how == "peer-timeout" else LONG_PEER_TIMEOUT
    ex = exchange(base_config(firms=FIRMS, order_entry=timeouts))
    consumer = MoldConsumer(ex.feed, ex.rerequest)
    other = OrderClient(ex.order_entry, "ALGO2", "secret2")
    other.next_message()
    client = child = kept_alive = None
    try:
        if how == "killed":
            host, port = ex.order_entry
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(SUPPORT), str(ROOT / "tests")]))
            child = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT.format(host=host, port=port)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            line = child.stdout.readline()                  # its orders are placed; it blocks on stdin
            assert line, "the client process died before placing its orders"
            refs = json.loads(line)
        else:
            client = OrderClient(ex.order_entry, "ALGO1", "secret1")
            if how == "peer-timeout":
                kept_alive = KeptAlive(client, other)
            refs = place_orders(client)
        other.enter("S1", "S", 100, "AAPL", 1_890_000)    # fills 100 of K1: 200 left
        assert [other.next_message()["type"] for _ in range(2)] == ["A", "E"]
        if client is not None:
            assert (lambda m: (m["type"], m["order_token"]))(client.next_message()) == ("E", "K1")
        wait_until(lambda: ex.ctl("status")["sessions"]["ALGO1"]["messages"] == 7, 10, message="K1's fill sent")
        assert ex.ctl("status")["live_orders"]["ALGO1"] == 3

        if kept_alive is not None:
            kept_alive.stop()                               # from now on ALGO1 (and ALGO2) are silent
        lose_the_session(how, ex, client, child)

        status = wait_until(lambda: (lambda s: s if not s["sessions"]["ALGO1"]["connected"] else None)(
            ex.ctl("status")), 15, message="the exchange noticing the lost session")
        assert status["live_orders"]["ALGO1"] == 0            # gone at the venue as soon as the session is
        assert status["sessions"]["ALGO1"]["cancel_on_disconnect"] is True
        assert status["sessions"]["ALGO2"]["cancel_on_disconnect"] is False
        assert status["sessions"]["ALGO1"]["canceled_on_disconnect"] == 3
        assert status["counters"]["cancel_on_disconnect_sessions"] == 1
        assert status["counters"]["cancel_on_disconnect_orders"] == 3
        assert ex.ctl("book", symbol="MSFT")["orders"] == {}
        # the log lines come through the output reader thread, which may trail the control answer
        wait_until(lambda: f"session ALGO1 lost ({WHY[how]}" in ex.output()
                   and "cancel on disconnect: 3 open orders canceled" in ex.output(), 10, message="the log lines")

        # the replay on the next login tells the firm, in sequence, after what it had
        again = OrderClient(ex.order_entry, "ALGO1", "secret1", sequence=1)
        replay = [again.next_message() for _ in range(status["sessions"]["ALGO1"]["messages"])]
        assert (replay[0]["type"], replay[0]["event_code"]) == ("S", "S")
        assert [(m["type"], m["order_token"]) for m in replay[1:7]] == [
            ("A", "K1"), ("A", "K2"), ("A", "K3"), ("A", "K4"), ("C", "K4"), ("E", "K1")]
        assert replay[5]["reason"] == "U"
        assert [(m["type"], m["order_token"], m["decrement_shares"], m["reason"]) for m in replay[7:]] == [
            ("C", "K1", 200, CANCEL_SYSTEM), ("C", "K2", 200, CANCEL_SYSTEM), ("C", "K3", 100, CANCEL_SYSTEM)]
        again.close()
        other.close()

        # the feed deleted the displayed orders, as for any cancel; the non-displayed one was never on it
        total = ex.ctl("status")["feed"]["messages"]
        deletes = [m["order_reference_number"] for m in map(itch.decode, consumer.receive_until(total, 20))
                   if m["type"] == "D"]
        assert deletes == [refs["K4"], refs["K1"], refs["K2"]]

        assert ex.stop() == 0
        report = json.loads((ex.records / "report.json").read_text())
        firm = report["firms"]["ALGO1"]
        orders = {o["token"]: o for o in firm["ledger"]["order_list"]}
        assert [(orders[t]["executed"], orders[t]["canceled"], orders[t]["leaves"]) for t in ("K1", "K2", "K3")] \
            == [(100, 200, 0), (0, 200, 0), (0, 100, 0)]
        assert firm["ledger"]["open_orders"] == 0 and firm["engine"]["open_orders"] == 0
        assert firm["ledger"]["canceled_shares_by_reason"] == {"U": 100, CANCEL_SYSTEM: 500}
        assert firm["engine"]["canceled_shares"] == 600
        assert report["counters"]["cancel_on_disconnect_orders"] == 3
    finally:
        if kept_alive is not None:
            kept_alive.stop()
        consumer.close()
        if client is not None:
            client.close()
        if child is not None and child.poll() is None:
            child.kill()
            child.wait(10)


def test_without_cancel_on_disconnect_the_orders_stay_resting(exchange):
    ex = exchange()
    client = OrderClient(ex.order_entry, "ALGO2", "secret2")
    assert client.next_message()["event_code"] == "S"
    client.enter("R1", "S", 100, "MSFT", 4_400_000)
    client.enter("R2", "B", 100, "AAPL", 1_880_000)
    assert [client.next_message()["type"] for _ in range(2)] == ["A", "A"]
    client.close()
    status = wait_until(lambda: (lambda s: s if not s["sessions"]["ALGO2"]["connected"] else None)(
        ex.ctl("status")), 15, message="the exchange noticing the closed connection")
    assert status["live_orders"]["ALGO2"] == 2
    assert status["sessions"]["ALGO2"]["cancel_on_disconnect"] is False
    assert status["sessions"]["ALGO2"]["canceled_on_disconnect"] == 0
    assert status["counters"]["cancel_on_disconnect_orders"] == 0
    assert len(ex.ctl("book", symbol="MSFT")["orders"]) == 1
    # the log line reaches the test through the process's output pipe, after the status already changed
    wait_until(lambda: "session ALGO2 lost (connection closed): cancel on disconnect off, 2 open orders stay"
               in ex.output(), 15, message="the exchange saying the orders stay")

    # nothing happened to them while the firm was away: the replay from where it was is empty
    again = OrderClient(ex.order_entry, "ALGO2", "secret2", sequence=4)
    assert again.login["sequence_number"] == 4
    again.cancel("R1")
    canceled = again.next_message()
    assert (canceled["type"], canceled["order_token"], canceled["reason"]) == ("C", "R1", "U")
    again.close()
    assert ex.stop() == 0
    ledger = json.loads((ex.records / "report.json").read_text())["firms"]["ALGO2"]["ledger"]
    assert ledger["canceled_shares_by_reason"] == {"U": 100, "T": 100}      # R2 expired at the close


def test_a_refused_second_login_and_the_end_of_the_day_do_not_cancel_on_disconnect(exchange):
    ex = exchange()
    client = OrderClient(ex.order_entry, "ALGO1", "secret1")
    client.next_message()
    client.enter("K1", "B", 100, "AAPL", 1_890_000)
    assert client.next_message()["type"] == "A"
    second = OrderClient(ex.order_entry, "ALGO1", "secret1")        # one live session per firm
    assert second.login == {"packet_type": "J", "reject_reason_code": "S"}
    assert second.next_packet() is None
    second.close()
    # the refused connection is gone (its close was handled before this answer), the session and order stay
    status = ex.ctl("status")
    assert status["sessions"]["ALGO1"]["connected"] and status["live_orders"]["ALGO1"] == 1
    assert status["counters"]["cancel_on_disconnect_sessions"] == 0

    # the day ends with the firm connected: its order expires 'T' at the close, not 'Z'
    assert ex.ctl("end") == {"ok": True, "ending": True}
    expired = client.next_message()
    assert (expired["type"], expired["order_token"], expired["reason"]) == ("C", "K1", "T")
    assert client.next_message()["event_code"] == "E"
    assert client.next_packet()["packet_type"] == "Z"               # End of Session
    assert ex.proc.wait(30) == 0
    client.close()
    report = json.loads((ex.records / "report.json").read_text())
    assert report["counters"]["cancel_on_disconnect_orders"] == 0
    assert report["firms"]["ALGO1"]["ledger"]["canceled_shares_by_reason"] == {"T": 100}
    assert "open orders canceled" not in ex.output()
