"""The appliance's side of the firm-wide risk hub, run by the drop copy (it holds the NATS
connection and is off the order path).

- ``firm.commands`` (``params.firm.commands: true``): each KILL, REDUCE or ACTIVATE the hub
  publishes is checked and handed to this appliance's supervisor through its control socket,
  marked ``source: FIRM`` with the hub's reason and operator: a KILL latches the kill switch with
  reason FIRM (reset only by name: ``appliance resume`` here, or an ACTIVATE from the hub, which
  unlatches only a kill the firm latched), REDUCE and ACTIVATE set the risk state.
- ``firm.heartbeat``: the hub silent for ``heartbeat_timeout_ms`` (NATS down counts: nothing is
  heard) applies ``on_silence`` once (``reduce`` by default; ``kill``, ``none``), logged with the
  reason; the hub heard again changes nothing by itself (an operator activates).
- ``appliance.<name>.marks``: every ``marks_ms`` the market-state table's marks (``mark_price``,
  the last good mark of each symbol), for the hub's marked P&L, exposure and peak; a plain
  publish that the stream keeps beside the events (``publisher.STREAM_SUBJECTS``).

Anything on the two firm subjects that is not what it must be is counted (``firm_garbage``),
logged once per kind, and dropped.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Callable

from appliance.command_io.json_lines import request_json

log = logging.getLogger("appliance.dropcopy")

COMMANDS_SUBJECT = "firm.commands"
HEARTBEAT_SUBJECT = "firm.heartbeat"
WATCH_PERIOD_S = 0.05
MAX_MESSAGE = 4096
WATCHDOG_OPERATOR = "firm-watchdog"
SUPERVISOR_TIMEOUT_S = 5.0
# firm command -> the supervisor's control requests that apply it, in order
REQUESTS = {"KILL": ("kill",), "REDUCE": ("reduce",), "ACTIVATE": ("resume", "activate")}


class FirmMessageError(ValueError):
    """A message on a firm subject without the shape it must have."""


def parse_command(data: bytes) -> dict:
    """A firm command, checked: command, reason, operator, hub, id, time_ns."""
    message = _object(data)
    command, reason, operator = message.get("command"), message.get("reason"), message.get("operator")
    if command not in REQUESTS:
        raise FirmMessageError(f"command must be one of {', '.join(REQUESTS)}, got {str(command)[:20]!r}")
    if not isinstance(reason, str) or len(reason) > 200 or not reason.isprintable():
        raise FirmMessageError("reason must be at most 200 printable characters")
    if not isinstance(operator, str) or not operator.strip() or len(operator) > 64 or not operator.isprintable():
        raise FirmMessageError("operator must be a name of at most 64 printable characters")
    for key in ("id", "time_ns"):
        if type(message.get(key)) is not int or message[key] < 0:
            raise FirmMessageError(f"{key} must be a non-negative integer")
    if not isinstance(message.get("hub"), str) or len(message["hub"]) > 64:
        raise FirmMessageError("hub must be a name")
    return message


def parse_heartbeat(data: bytes) -> dict:
    message = _object(data)
    if not isinstance(message.get("hub"), str) or type(message.get("seq")) is not int:
        raise FirmMessageError("a heartbeat has a hub name and an integer seq")
    return message


def _object(data: bytes) -> dict:
    if len(data) > MAX_MESSAGE:
        raise FirmMessageError(f"{len(data)} bytes, more than {MAX_MESSAGE}")
    try:
        message = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise FirmMessageError(f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(message, dict):
        raise FirmMessageError("not a JSON object")
    return message


class FirmLink:
    """Firm commands in, the hub's heartbeat watched, marks out; figures in ``stats``."""

    def __init__(self, config, stats, control_socket: str | None, marks: Callable[[], dict] | None = None):
        self.config = config
        self.stats = stats
        self.control_socket = control_socket
        self.marks = marks
        self.last_heartbeat = time.monotonic()     # silence is counted from the start
        self.silent = False
        self.heartbeats = 0
        self.applied: list[dict] = []               # commands handed to the supervisor (for tests and logs)
        self._said: dict = {}

    # ------------------------------------------------------------------ one connection

    async def attach(self, nc) -> list:
        """The subscriptions of one NATS session (the caller unsubscribes them)."""
        if not self.config.firm_commands:
            return []
        return [await nc.subscribe(COMMANDS_SUBJECT, cb=self._on_command),
                await nc.subscribe(HEARTBEAT_SUBJECT, cb=self._on_heartbeat)]

    async def publish_marks(self, nc) -> None:
        """Every ``marks_ms`` while the session lasts (cancelled with it)."""
        if not self.config.marks_ms or self.marks is None:
            return
        while True:
            try:
                marks = self.marks()
                await nc.publish(self.config.marks_subject, json.dumps(
                    {"appliance": self.config.appliance, "time_ns": time.time_ns(), "marks": marks},
                    separators=(",", ":")).encode())
                self.stats.marks_published += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:             # a torn read, a closing connection: the next period tries again
                self._say("marks", f"drop copy: marks not published: {type(exc).__name__}: {exc}")
            await asyncio.sleep(self.config.marks_ms / 1000)

    async def _on_command(self, message) -> None:
        try:
            command = parse_command(message.data)
        except FirmMessageError as exc:
            self.stats.firm_garbage += 1
            self._say("command", f"drop copy: a message on {COMMANDS_SUBJECT} dropped: {exc}")
            return
        self.stats.firm_commands += 1
        log.warning("FIRM %s from risk hub %s (operator %s, id %d): %s", command["command"], command["hub"],
                    command["operator"], command["id"], command["reason"])
        await self.apply(command["command"], command["operator"].strip(), f"hub {command['hub']}: {command['reason']}")

    async def _on_heartbeat(self, message) -> None:
        try:
            parse_heartbeat(message.data)
        except FirmMessageError as exc:
            self.stats.firm_garbage += 1
            self._say("heartbeat", f"drop copy: a message on {HEARTBEAT_SUBJECT} dropped: {exc}")
            return
        now = time.monotonic()
        self.heartbeats += 1
        if self.silent:
            log.warning("risk hub heard again after %.1f s of silence; the risk state stays as it is until an "
                        "operator activates (here, or from the hub)", now - self.last_heartbeat)
            self.silent = False
            self.stats.hub_silent = 0
        self.last_heartbeat = now

    # ------------------------------------------------------------------ the watchdog

    async def watch(self) -> None:
        """The hub's silence, looked at every ``WATCH_PERIOD_S`` for the drop copy's whole life."""
        if not self.config.firm_commands:
            return
        while True:
            await asyncio.sleep(WATCH_PERIOD_S)
            try:
                await self._look()
            except asyncio.CancelledError:
                raise
            except Exception as exc:             # never the watchdog's end: the next look may work
                self._say("watch", f"drop copy: the risk hub watchdog failed a look: {type(exc).__name__}: {exc}")

    async def _look(self) -> None:
        quiet = time.monotonic() - self.last_heartbeat
        if not self.silent and quiet >= self.config.hub_timeout_ms / 1000:
            self.silent = True
            self.stats.hub_silent = 1
            self.stats.hub_silences += 1
            reason = (f"risk hub silent for {quiet:.1f} s (no {HEARTBEAT_SUBJECT} within heartbeat_timeout_ms "
                      f"{self.config.hub_timeout_ms})")
            action = self.config.on_hub_silence
            log.error("%s: %s", reason, "on_silence none: nothing done" if action == "none" else
                      f"on_silence {action}: asking the supervisor")
            if action != "none":
                await self.apply(action.upper(), WATCHDOG_OPERATOR, reason)

    # ------------------------------------------------------------------ to the supervisor

    async def apply(self, command: str, operator: str, reason: str) -> bool:
        """Hand one firm command to the supervisor (each of its requests in order); False when it
        refused or did not answer (logged, counted in ``firm_refused``)."""
        self.applied.append({"command": command, "operator": operator, "reason": reason})
        if self.control_socket is None:
            return False
        loop = asyncio.get_running_loop()
        for name in REQUESTS[command]:
            request = {"command": name, "operator": operator, "source": "FIRM", "reason": reason[:200]}
            try:
                answer = await loop.run_in_executor(None, request_json, self.control_socket, request,
                                                    SUPERVISOR_TIMEOUT_S, "the supervisor")
            except (OSError, ValueError) as exc:
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if not isinstance(answer, dict) or not answer.get("ok"):
                self.stats.firm_refused += 1
                log.error("FIRM %s: the supervisor did not take %r: %s", command, name,
                          answer.get("error") if isinstance(answer, dict) else answer)
                return False
        return True

    def _say(self, kind: str, text: str) -> None:
        if self._said.get(kind) != text:
            self._said[kind] = text
            log.warning("%s", text)
