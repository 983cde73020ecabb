"""What every takeover test checks against the venue, held once: the load that runs through a takeover,
the orders a journal says were sent, and positions against the venue's end-of-day report
(``tests/oms/test_takeover_process.py`` on one box, ``tests/oms/test_takeover_remote.py`` across two)."""
from __future__ import annotations

import threading

from appliance.messages.codes import Action, ExecEvent
from appliance.oms import journal_records as jr
from appliance.oms.journal_format import read_records
from appliance.oms.journal_records import RecordType, SessionEvent
from oms_rig import SYMBOLS, Rig, send_mixed

E = ExecEvent
ANSWERS = {E.ACCEPTED, E.REJECTED, E.REJECTED_LOCALLY, E.EXECUTED, E.CANCELED}


class Load:
    """Approved orders from a thread until stopped: fills at once, resting orders, their cancels."""

    def __init__(self, rig: Rig):
        self.rig = rig
        self.next_id = 1
        self.new_ids: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rig = self.rig
        try:
            while not self._stop.wait(0.002):
                i = self.next_id
                if send_mixed(rig, i):
                    self.new_ids.append(i)
                self.next_id = i + 1
        except BaseException as exc:          # the test fails with it
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self.error is None, self.error


def journal_records(path: str) -> list:
    return read_records(path)[0]


def sent_tokens(records) -> dict[str, int]:
    """token -> client order id of every new order or replacement journaled as sent."""
    out = {}
    for record in records:
        if record.type == RecordType.ORDER_SENT:
            sent = jr.ORDER_SENT.parse(record.payload)
            if sent.action in (Action.NEW, Action.REPLACE):
                out[sent.token.decode()] = sent.client_order_id
    return out


def new_orders_during_takeovers(records) -> list[int]:
    """Sequences of ORDER_SENT (new or replace) between a START after the first and its RECOVERED."""
    starts, inside, found = 0, False, []
    for record in records:
        if record.type == RecordType.SESSION:
            event = jr.SESSION.parse(record.payload).event
            if event == SessionEvent.START:
                starts += 1
                inside = starts > 1
            elif event == SessionEvent.RECOVERED:
                inside = False
        elif inside and record.type == RecordType.ORDER_SENT and \
                jr.ORDER_SENT.parse(record.payload).action in (Action.NEW, Action.REPLACE):
            found.append(record.sequence)
    return found


def assert_positions_match(rig: Rig, report: dict, firm: str = "ALGO1") -> None:
    """The OMS's positions table (the rig's) holds the venue's fills and positions of ``firm``."""
    ledger = report["firms"][firm]["ledger"]
    for symbol in SYMBOLS:
        fills = [f for f in ledger["fill_list"] if f["symbol"] == symbol]
        view = rig.position(symbol)
        assert view.position == ledger["positions"].get(symbol, 0), symbol
        assert view.fills == len(fills), symbol
        assert view.filled_shares == sum(f["shares"] for f in fills), symbol


def assert_venue_saw_each_order_once(outbound: list[dict], enter_tokens: list[str], sent: dict[str, int]) -> None:
    """No token twice, no duplicate-token reject, no client order id sent twice (``sent``: token -> client id
    of what the journals hold), no match number twice (a fill twice)."""
    assert len(enter_tokens) == len(set(enter_tokens)), "a token was reused"
    assert not [m for m in outbound if m["type"] == "J" and m["reason"] == "O"], "the venue saw a duplicate token"
    unknown = [token for token in enter_tokens if token not in sent]
    assert unknown == [], f"Enter Orders at the venue that no journal holds: {unknown[:10]}"
    clients = [sent[token] for token in enter_tokens]
    assert len(clients) == len(set(clients)), "an order was sent twice"
    matches = [m["match_number"] for m in outbound if m["type"] == "E"]
    assert len(matches) == len(set(matches)), "a fill twice"
