"""Stand-ins for risk and the OMS that speak the control words, for supervisor tests.

They are not the real components (those have their own tests): just enough behaviour for the
supervisor's gate, restart and command paths: ready flags, the kill switch latch and reset.
"""
from __future__ import annotations

import os
import time

from appliance.messages.catalog import RISK_COMMAND
from appliance.messages.codes import ControlCommand, RiskState
from appliance.runtime.agent import Agent


class FakeRisk(Agent):
    def on_start(self) -> None:
        memory = self.context.memory
        self.control = memory.control("risk")
        self.commands = memory.ring("risk_commands", "consumer")
        self.buffer = memory.ring_buffer("risk_commands")
        self.control.set("risk_kill_latched", 0)
        self.control.set("risk_state", RiskState.ACTIVE)
        self.control.set("risk_ready", 1)
        self.operators = self.context.counters.allocate("fake_risk.resets")

    def do_work(self) -> int:
        offset = self.commands.peek()
        if offset < 0:
            return 0
        fields = RISK_COMMAND.as_dict(self.buffer, offset)
        self.commands.release()
        if fields["command"] == ControlCommand.KILL:
            self.control.set("risk_state", RiskState.HALTED)
            self.control.set("risk_kill_latched", 1)
        elif fields["command"] == ControlCommand.RESET and fields["operator"].strip(b"\0 "):
            self.control.set("risk_kill_latched", 0)
            self.control.set("risk_state", RiskState.ACTIVE)
            self.operators.inc()
        elif fields["command"] in (ControlCommand.SET_REDUCING, ControlCommand.SET_ACTIVE) and \
                not self.control.get("risk_kill_latched"):
            self.control.set("risk_state", RiskState.REDUCING if fields["command"] == ControlCommand.SET_REDUCING
                             else RiskState.ACTIVE)
        return 1

    def on_close(self) -> None:
        self.control.set("risk_ready", 0)


class FakeOms(Agent):
    def on_start(self) -> None:
        self.control = self.context.memory.control("oms")
        self.control.set("oms_ready", 1)
        self.control.set("oms_open_orders", 0)

    def do_work(self) -> int:
        return 0

    def on_close(self) -> None:
        self.control.set("oms_ready", 0)


class GateWatchingOms(FakeOms):
    """A stand-in OMS that counts, in its ``oms_open_orders`` word, the times it saw the gate close: how a
    test sees when a parked OMS learns of a closed gate."""

    def on_start(self) -> None:
        super().on_start()
        self.was_open = False

    def do_work(self) -> int:
        is_open = bool(self.control.get("gate_open"))
        if self.was_open and not is_open:
            self.control.set("oms_open_orders", self.control.get("oms_open_orders") + 1)
        self.was_open = is_open
        return 0


class FailsAtStart(Agent):
    def on_start(self) -> None:
        raise RuntimeError("deliberately broken at start")

    def do_work(self) -> int:
        return 0


class ExitsLater(Agent):
    """Runs for a while, then exits with an error: exercises the restart policy."""

    def on_start(self) -> None:
        self.until = time.monotonic() + float(os.environ.get("EXITS_LATER_S", "0.5"))

    def do_work(self) -> int:
        if time.monotonic() > self.until:
            os._exit(3)
        return 0


class SlowAfterRestart(Agent):
    """Starts at once the first time; every later start takes ``SLOW_START_S`` in on_start (a busy
    machine, a long journal replay): a restarted process the supervisor must not take for hung."""

    def on_start(self) -> None:
        marker = os.environ["SLOW_START_MARKER"]
        if os.path.exists(marker):
            time.sleep(float(os.environ.get("SLOW_START_S", "2")))
        else:
            open(marker, "w").close()

    def do_work(self) -> int:
        return 0


class FakeFeed(Agent):
    """Publishes every book live once and says so; the test then plays the books going bad."""

    def on_start(self) -> None:
        memory = self.context.memory
        self.control = memory.control("feed")
        self.market = memory.market_state_writer()
        now = time.time_ns()
        for sid in range(len(self.context.layout.symbols)):
            self.market.publish(sid, 1_000_000, 100, 1_000_200, 100, 0, 0, 0, ord("T"), 1, now, now)
        self.control.set("feed_stale_reason", 0)
        self.control.set("feed_ready", 1)

    def do_work(self) -> int:
        return 0

    def on_close(self) -> None:
        self.control.set("feed_ready", 0)
