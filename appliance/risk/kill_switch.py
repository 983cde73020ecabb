"""Trading state and the kill switch: ACTIVE, REDUCING, HALTED, and who may undo a HALTED.

* ``trip`` (a KILL command, the daily loss limit, the drawdown limit, the throttle tripped
  ``trips`` times inside its window, or the state file unreadable at start / not writable)
  latches HALTED: only cancels pass, a ControlEvent KILL asks
  the OMS to cancel every open order, a log line says why. Tripping again while latched changes
  nothing (the first reason stays).
* ``reset`` needs a person: a non-empty operator name, recorded in the RESET event the OMS
  journals. Without one it is refused and counted. Reset returns to ACTIVE (not to a REDUCING
  set before the kill: a trip clears it).
* ``set_reducing`` / ``set_active`` move between ACTIVE and REDUCING, never out of a latched HALTED;
  the operator who set REDUCING is kept (``reducing_by``) and persisted.
* ``kill_symbol`` latches one symbol's kill switch (RTS 6 Art. 12: kill "any or all" orders):
  its new orders and replaces are refused (SYMBOL_KILLED), cancels pass, a ControlEvent
  KILL_SYMBOL (value = symbol id) asks the OMS to cancel its open orders; the trading state does
  not change. ``reset_symbol`` needs a person's name like ``reset``. The two kinds of latch are
  independent: a full ``reset`` leaves the symbol latches as they are (each was a decision about
  one symbol, undone by name for that symbol), and a symbol reset does not unlatch the whole book.

Every change of state appends a ControlEvent to ``events`` (the agent writes them to the OMS)
and bumps ``epoch`` (the agent mirrors the state into the control words). Every change of what
the risk state file holds (the latch, the symbol latches, REDUCING) bumps ``durable_epoch``: the
agent writes the file before it sends the events or the words (``agent``, ``persist``).

Across restarts: ``restore_kill`` / ``restore_symbol_kill`` / ``restore_reducing`` put back what
the state file held (a restored latch keeps its original reason, operator and time, and says
so in the log); ``start(latched_before=...)`` is the fallback when only the shared control word
remembers a latch (risk restarted, the segment did not). A state file that cannot be read
latches STATE_FILE, a write that fails latches STATE_WRITE: both need a named reset.
"""
from __future__ import annotations

import logging
import time

from appliance.messages.codes import ControlEventKind, RiskState

from .rate import SlidingWindow

log = logging.getLogger("appliance.risk")

MANUAL = "MANUAL"
FIRM = "FIRM"                         # a firm command from the risk hub (appliance/riskhub/), via the drop copy
DAILY_LOSS = "DAILY_LOSS"
DRAWDOWN = "DRAWDOWN"
THROTTLE = "THROTTLE"
PREVIOUS_RUN = "PREVIOUS_RUN"         # risk restarted while the kill switch was latched (only the control word said so)
STATE_FILE = "STATE_FILE"             # the risk state file could not be read: nothing says trading was allowed
STATE_WRITE = "STATE_WRITE"           # the risk state file could not be written: a latch would not survive a restart


def _when(t_ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t_ns // 1_000_000_000)) if t_ns else "?"


class TradingControl:
    """The risk state word and the latched kill switch, with the events they cause."""

    def __init__(self, throttle_trips: int = 0, throttle_window_ns: int = 1):
        self.state = int(RiskState.STARTING)
        self.latched = False
        self.kill_reason = ""
        self.kill_operator = ""
        self.kill_value = 0
        self.killed_ns = 0
        self.epoch = 0                    # +1 on every state change
        self.durable_epoch = 0            # +1 on every change the state file holds
        self.reducing_by: tuple[str, int] | None = None    # (operator, t_ns) of the REDUCING in force
        self.changed_ns = 0
        self.events: list[tuple] = []     # (kind, state, value, operator, detail, t_ns), oldest first
        self.kills = 0
        self.resets = 0
        self.resets_refused = 0
        self.commands_refused = 0
        self.reset_log: list[tuple[str, int]] = []     # (operator, t_ns) of every accepted reset
        self.symbol_kills: dict[int, tuple[str, str, int]] = {}    # symbol id -> (reason, operator, t_ns) latched
        self.symbol_trips = 0
        self.symbol_resets = 0
        self._resume_state = int(RiskState.ACTIVE)     # where STARTING goes once the state is rebuilt
        self.throttle_trips = None
        self.configure_throttle(throttle_trips, throttle_window_ns)

    def configure_throttle(self, trips: int, window_ns: int) -> None:
        """``trips`` MESSAGE_RATE denials inside ``window_ns`` latch the kill switch (0: never)."""
        self.throttle_trips = SlidingWindow(trips, window_ns) if trips else None

    # ------------------------------------------------------------------ transitions

    def _set_state(self, state: int, now: int) -> None:
        if state != self.state:
            self.state = state
            self.epoch += 1
            self.durable_epoch += 1
            self.changed_ns = now
            self.events.append((int(ControlEventKind.STATE_CHANGED), state, 0, "", RiskState(state).name, now))

    def start(self, now: int, *, latched_before: bool = False, reducing_before: bool = False) -> None:
        """Risk (re)started: a kill switch latched by the previous run stays latched (fail closed)."""
        if latched_before:
            self.latched = True
            self.kill_reason = PREVIOUS_RUN
            self.killed_ns = now
            self.state = int(RiskState.HALTED)
            self.epoch += 1
            self.changed_ns = now
            log.warning("kill switch still latched from the previous run: HALTED until a named reset")
        else:
            self._resume_state = int(RiskState.REDUCING if reducing_before else RiskState.ACTIVE)
            if reducing_before and self.reducing_by is None:
                self.reducing_by = ("", now)
        self.durable_epoch += 1

    def restore_kill(self, reason: str, operator: str, value: int, t_ns: int, now: int) -> None:
        """The state file says the kill switch was latched (and not reset): HALTED again, with the
        original reason, operator, value and time. No KILL event: this is not a new kill (the
        supervisor's gate closes on the control word, and the OMS cancels on that)."""
        self.latched = True
        self.kill_reason, self.kill_operator, self.kill_value, self.killed_ns = reason, operator, value, t_ns
        self.state = int(RiskState.HALTED)
        self.reducing_by = None
        self.epoch += 1
        self.durable_epoch += 1
        self.changed_ns = now
        log.warning("kill switch restored from the state file: latched for %s%s at %s%s (not reset since); HALTED "
                    "until a named reset", reason, f" by {operator}" if operator else "", _when(t_ns),
                    f", value {value}" if value else "")

    def restore_reducing(self, operator: str, t_ns: int) -> None:
        """The state file says REDUCING: the state once rebuilt is REDUCING (unless HALTED)."""
        self._resume_state = int(RiskState.REDUCING)
        self.reducing_by = (operator, t_ns)
        self.durable_epoch += 1
        log.warning("REDUCING restored from the state file (set by %s at %s)", operator or "?", _when(t_ns))

    def restore_symbol_kill(self, s: int, name: str, reason: str, operator: str, t_ns: int, now: int) -> None:
        """The state file says symbol ``s`` was latched: latched again, original reason kept. A
        KILL_SYMBOL event (detail = the name) asks the OMS to cancel whatever it holds there."""
        self.symbol_kills[s] = (reason, operator, t_ns)
        self.durable_epoch += 1
        self.events.append((int(ControlEventKind.KILL_SYMBOL), self.state, s, operator, name, now))
        log.warning("symbol kill switch for %s restored from the state file: latched for %s%s at %s; new orders "
                    "in %s refused until a named RESET_SYMBOL", name, reason, f" by {operator}" if operator else "",
                    _when(t_ns), name)

    def ready(self, now: int) -> None:
        """State rebuilt: leave STARTING for ACTIVE (or the REDUCING the previous run was in)."""
        if self.state == RiskState.STARTING:
            self._set_state(self._resume_state, now)

    def trip(self, reason: str, now: int, value: int = 0, operator: str = "") -> bool:
        """Latch HALTED and ask the OMS to cancel everything; False if it was latched already."""
        if self.latched:
            return False
        self.latched = True
        self.kill_reason, self.kill_operator, self.kill_value, self.killed_ns = reason, operator, value, now
        self.kills += 1
        self.state = int(RiskState.HALTED)
        self.reducing_by = None
        self.epoch += 1
        self.durable_epoch += 1
        self.changed_ns = now
        self.events.append((int(ControlEventKind.KILL), self.state, value, operator, reason, now))
        log.error("KILL SWITCH latched: %s%s%s; HALTED, OMS asked to cancel every open order; a named reset is "
                  "needed", reason, f" by {operator}" if operator else "", f" (value {value})" if value else "")
        return True

    def reset(self, operator: str, now: int) -> bool:
        """Unlatch, back to ACTIVE; refused (and counted) without an operator name or when not latched."""
        operator = operator.strip()
        if not operator:
            self.resets_refused += 1
            log.warning("kill switch reset refused: no operator name")
            return False
        if not self.latched:
            self.commands_refused += 1
            log.info("reset by %s ignored: the kill switch is not latched", operator)
            return False
        log.warning("kill switch reset by %s (latched for %s since %d)", operator, self.kill_reason, self.killed_ns)
        self.latched = False
        self.kill_reason = self.kill_operator = ""
        self.kill_value = 0
        self.resets += 1
        self.reset_log.append((operator, now))
        state = int(RiskState.ACTIVE)
        self.state = state
        self.reducing_by = None
        self.epoch += 1
        self.durable_epoch += 1
        self.changed_ns = now
        self.events.append((int(ControlEventKind.RESET), state, 0, operator, "RESET", now))
        if self.throttle_trips is not None:
            self.configure_throttle(self.throttle_trips.limit, self.throttle_trips.window_ns)
        return True

    def set_reducing(self, now: int, operator: str = "") -> bool:
        if self.latched or self.state == RiskState.HALTED:
            self.commands_refused += 1
            return False
        if self.reducing_by is None or self.state != RiskState.REDUCING:
            self.reducing_by = (operator, now)
        self.durable_epoch += 1
        if self.state == RiskState.STARTING:
            self._resume_state = int(RiskState.REDUCING)
            return True
        self._set_state(int(RiskState.REDUCING), now)
        return True

    def set_active(self, now: int, operator: str = "") -> bool:
        if self.latched or self.state == RiskState.HALTED:
            self.commands_refused += 1
            return False
        self.reducing_by = None
        self.durable_epoch += 1
        if self.state == RiskState.STARTING:
            self._resume_state = int(RiskState.ACTIVE)
            return True
        self._set_state(int(RiskState.ACTIVE), now)
        return True

    def throttled(self, now: int) -> bool:
        """A MESSAGE_RATE denial happened; True when it latched the kill switch."""
        window = self.throttle_trips
        if window is None:
            return False
        window.record(now)
        if window.full(now):           # this denial and the trips-1 before it all inside the window
            return self.trip(THROTTLE, now, window.limit)
        return False

    # ------------------------------------------------------------------ one symbol's kill switch

    def kill_symbol(self, s: int, name: str, now: int, operator: str = "", reason: str = MANUAL) -> bool:
        """Latch symbol ``s``'s kill switch and ask the OMS to cancel its open orders (ControlEvent
        KILL_SYMBOL, value = the symbol id, detail = its name); False if latched already (the first
        reason and operator stay). The trading state does not change."""
        if s in self.symbol_kills:
            return False
        self.symbol_kills[s] = (reason, operator, now)
        self.symbol_trips += 1
        self.durable_epoch += 1
        self.events.append((int(ControlEventKind.KILL_SYMBOL), self.state, s, operator, name, now))
        log.error("SYMBOL KILL SWITCH latched for %s: %s%s; new orders and replaces in %s refused (SYMBOL_KILLED), "
                  "the OMS asked to cancel its open orders there; a named RESET_SYMBOL is needed", name, reason,
                  f" by {operator}" if operator else "", name)
        return True

    def reset_symbol(self, s: int, name: str, operator: str, now: int) -> bool:
        """Unlatch symbol ``s``; like ``reset``, refused (and counted) without an operator name or when
        not latched. Independent of the whole-book kill switch: neither resets the other."""
        operator = operator.strip()
        if not operator:
            self.resets_refused += 1
            log.warning("symbol kill switch reset for %s refused: no operator name", name)
            return False
        if s not in self.symbol_kills:
            self.commands_refused += 1
            log.info("symbol reset of %s by %s ignored: its kill switch is not latched", name, operator)
            return False
        reason, by, since = self.symbol_kills.pop(s)
        self.symbol_resets += 1
        self.durable_epoch += 1
        self.events.append((int(ControlEventKind.RESET_SYMBOL), self.state, s, operator, name, now))
        log.warning("symbol kill switch for %s reset by %s (latched for %s%s since %d)", name, operator, reason,
                    f" by {by}" if by else "", since)
        return True

    def symbols_killed(self) -> list[int]:
        """The ids of the symbols whose kill switch is latched, in order."""
        return sorted(self.symbol_kills)

    def take_events(self) -> list[tuple]:
        events, self.events = self.events, []
        return events
