"""Tiny agents for runner tests."""
from __future__ import annotations

from appliance.runtime.agent import Agent


class IdleAgent(Agent):
    """Never has work: exercises the heartbeat and the idle strategy alone."""

    def do_work(self) -> int:
        return 0


class FailingAgent(Agent):
    """Raises after a few duty cycles, to check the runner reports it."""

    def on_start(self) -> None:
        self.cycles = 0

    def do_work(self) -> int:
        self.cycles += 1
        if self.cycles > 100:
            raise RuntimeError("deliberate failure")
        return 0


class NotAnAgent:
    pass
