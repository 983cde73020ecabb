"""Cancel everything: risk's control events, the supervisor's gate word, and the cancels they make owed.

Risk's control events (``risk_events``): KILL cancels every open order, KILL_SYMBOL one symbol's
(journaled by name: the layout's ids may change), and new orders risk approved before the kill
and the OMS has not read yet are refused (KILLED); SNAPSHOT_REQUEST is answered from the slow
path once the OMS is ready. The gate word: a close for RISK_UNHEALTHY, KILL_SWITCH or
MARKET_DATA cancels everything once per gate epoch. The clock guard's verdict is journaled next
to the orders.

Cancels owed: a kill or a cancel-all gate close is journaled first, then every open order it
covers owes a cancel (``recovery.apply_control``, the same function recovery replays). The owed
cancels go out as soon as the session is logged in, now or after a reconnect or a restart, and
an order leaves the set only when the venue says it is finished.
"""
from __future__ import annotations

import logging
import time

from appliance.messages.catalog import CONTROL_EVENT
from appliance.messages.codes import ALL_SYMBOLS, ClockState, ControlEventKind, name_of
from appliance.oms import journal_records as jr
from appliance.oms.journal_records import ControlKind, RecordType, SendReason
from appliance.oms.orders import OPEN_STATES
from appliance.oms.recovery import apply_control

log = logging.getLogger("appliance.oms")

MAX_EVENTS_PER_CYCLE = 16
CLOCK_RECORD_NS = 10_000_000_000       # the clock's offset in the journal at least every 10 s
_CONTROL_TYPE = CONTROL_EVENT.type_id


class Controls:
    def __init__(self, ring, orders, gate, guard, sender, control, stocks: list[bytes], counters,
                 last_gate_epoch: int):
        self.ring = ring
        self.orders = orders
        self.gate = gate
        self.guard = guard
        self.sender = sender
        self.session = sender.session
        self.control = control
        self.stocks = stocks
        self._n_symbols = len(stocks)
        self.last_gate_epoch = last_gate_epoch       # the last gate epoch acted on (journaled)
        self.snapshot_pending = False
        self.cancel_all_why = "restart" if orders.cancel_owed else ""   # announced with the next pass
        self._waiting_logged = False
        self._last_clock_state = -1                  # journal the clock once at start, then on change
        self._next_clock_record_ns = 0
        self.c_control_events = counters.control_events
        self.c_bad_ring_records = counters.bad_ring_records
        self.c_cancel_all = counters.cancel_all
        self.c_cancel_all_orders = counters.cancel_all_orders
        self.c_cancel_errors = counters.cancel_errors

    # ------------------------------------------------------------------ risk -> OMS: control events

    def process_events(self) -> int:
        ring = self.ring
        buffer = ring.buffer
        done = 0
        while done < MAX_EVENTS_PER_CYCLE:
            offset = ring.peek()
            if offset < 0:
                break
            event = CONTROL_EVENT.read(buffer, offset)
            ring.release()
            done += 1
            if event.type_id != _CONTROL_TYPE:
                self.c_bad_ring_records.inc()
                continue
            kind, value, detail = event.kind, event.value, event.detail
            self.c_control_events.inc()
            if kind == ControlEventKind.KILL_SYMBOL:        # journaled by name: the layout's ids may change
                detail = self.stocks[value].rstrip() if 0 <= value < self._n_symbols else b"?"
            payload = jr.CONTROL.pack(kind, event.state, value, 0, event.operator, detail, event.t_ns)
            self.guard.record(RecordType.CONTROL, payload, time.time_ns(), reserve=True)
            if kind == ControlEventKind.KILL:
                self.sender.refuse_approved_before(ALL_SYMBOLS)
                self.owe(jr.CONTROL.parse(payload), "kill", time.monotonic_ns())
            elif kind == ControlEventKind.KILL_SYMBOL:
                self.sender.refuse_approved_before(value)
                self.owe(jr.CONTROL.parse(payload), f"kill {jr.text(detail)}", time.monotonic_ns())
            elif kind == ControlEventKind.SNAPSHOT_REQUEST:
                self.snapshot_pending = True
        return done

    # ------------------------------------------------------------------ the control words

    def watch_gate(self, now_mono: int) -> int:
        gate_open, reasons, epoch = self.gate.gate_word()
        if epoch == self.last_gate_epoch:
            return 0
        self.last_gate_epoch = epoch
        payload = jr.CONTROL.pack(ControlKind.GATE_CHANGED, gate_open, reasons, epoch, t_ns=time.time_ns())
        self.guard.record(RecordType.CONTROL, payload, time.time_ns(), reserve=True)
        self.owe(jr.CONTROL.parse(payload), "gate", now_mono)
        return 1

    def record_clock(self, now_mono: int) -> int:
        """The clock guard's verdict in the journal next to the orders: on every change of state,
        and every CLOCK_RECORD_NS otherwise (the offset drifts without a state change)."""
        if now_mono < self._next_clock_record_ns and self.gate.clock_state() == self._last_clock_state:
            return 0
        state, offset, maxerror = self.gate.clock_words()
        self._last_clock_state = state
        self._next_clock_record_ns = now_mono + CLOCK_RECORD_NS
        self.guard.record(RecordType.CONTROL, jr.CONTROL.pack(ControlEventKind.CLOCK, state, offset, maxerror,
                                                              detail=name_of(ClockState, state).encode()[:16],
                                                              t_ns=time.time_ns()), time.time_ns(), reserve=True)
        return 1

    # ------------------------------------------------------------------ cancels owed

    def owe(self, control: jr.CONTROL.view, why: str, now_mono: int) -> None:
        """A kill or cancel-all gate close, already journaled: the orders it covers owe a cancel."""
        owed = apply_control(self.orders, control)
        if owed or self.orders.cancel_owed:
            self.cancel_all_why = why
            self.discharge(now_mono)

    def discharge(self, now_mono: int) -> int:
        """Send a cancel to every order that owes one and has none outstanding (when logged in).
        The first pass after a kill is the cancel-all: journaled, counted, logged."""
        owed = self.orders.cancel_owed
        if not owed:
            return 0
        if not self.session.logged_in:
            if not self._waiting_logged:
                self._waiting_logged = True
                log.warning("cancel-all (%s): %d orders owe a cancel; waiting for the session", self.cancel_all_why
                            or "owed", len(owed))
            return 0
        self._waiting_logged = False
        sent = failed = 0
        send_cancel = self.sender.send_cancel
        for order in list(owed):
            if 0 in order.requests:
                continue                        # a cancel is outstanding: the in-flight timeout re-asks
            try:
                if send_cancel(order, 0, SendReason.CANCEL_ALL, now_mono):
                    sent += 1
                elif order.state not in OPEN_STATES:
                    owed.discard(order)
            except Exception:                   # never let one order stop the others' cancels
                failed += 1
                owed.discard(order)
                self.c_cancel_errors.inc()
                log.exception("cancel of %r failed; the other cancels go on", order)
        why = self.cancel_all_why
        if why:
            self.cancel_all_why = ""
            epoch = self.control.get("oms_cancel_all_epoch") + 1
            self.control.set("oms_cancel_all_epoch", epoch)
            self.c_cancel_all.inc()
            self.c_cancel_all_orders.add(sent)
            self.guard.record(RecordType.CONTROL, jr.CONTROL.pack(ControlKind.CANCEL_ALL, self.last_gate_epoch, sent,
                                                                  epoch, detail=why.encode()[:16], t_ns=time.time_ns()),
                              time.time_ns(), reserve=True)
            log.warning("cancel-all (%s): %d open orders asked to cancel (epoch %d)%s", why, sent, epoch,
                        f"; {failed} could not be" if failed else "")
        return sent + failed
