"""The risk hub's loop: the stream read from its start, marks, limits, firm commands, a heartbeat.

At every (re)connection the hub reads the stream (``APPLIANCE_EVENTS``, subjects
``appliance.*.events`` and ``appliance.*.marks``) from its first message through an ordered
consumer and rebuilds the firm's book from nothing (``FirmBook``): a hub restarted, or
reconnected, agrees with what the appliances journaled, because the stream is the record; the
marks come in the stream's order with the events, so the peak P&L (moved at marks) is rebuilt
too, and so do this hub's own commands (``firm.commands``, kept by the stream too): met while
reading, each says which breaches had fired, or, an ACTIVATE, which were accepted as they stood
then, so a restarted hub does not fire again for them. A stream made before it kept the marks:
the marks are taken live (plain NATS), and a restarted hub's peak starts again from that moment
(logged); a drop copy adds the subjects it lacks. Limits are checked once it has caught
up (the stream's last message when it started) and after every batch of events or marks since.

Firm commands go on ``firm.commands`` (one JSON object: ``command`` KILL | REDUCE | ACTIVATE,
``reason``, ``operator``, ``hub``, ``id``, ``time_ns``, the moment of the decision); every
appliance's drop copy hands them to its supervisor (``dropcopy/firm.py``). A limit breached
sends ``on_breach`` once per breach (named reason, and symbol for a position); an ACTIVATE by
an operator acknowledges the breaches standing at that moment (only a new one fires again).
``firm.heartbeat`` says the hub is alive every ``heartbeat_ms``.

Operators reach the hub on ``firm.hub.<name>.control`` (``appliance risk-hub kill|reduce|activate|
status``). Anything on the subjects that is not what it must be is counted and dropped (``garbage``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

from appliance.dropcopy.event_json import decode as decode_event
from appliance.dropcopy.firm import FirmMessageError, parse_command
from appliance.dropcopy.publisher import connect_nats, covers

from .book import EventError, FirmBook, dollars
from .config import RiskHubConfig

log = logging.getLogger("appliance.riskhub")

COMMANDS_SUBJECT = "firm.commands"
HEARTBEAT_SUBJECT = "firm.heartbeat"
EVENTS_SUBJECT = "appliance.*.events"
MARKS_SUBJECT = "appliance.*.marks"
STREAM_FILTER = ">"                  # whatever the stream keeps (events, marks, commands), in its order
FIRM_COMMANDS = ("KILL", "REDUCE", "ACTIVATE")
MAX_REASON = 200
RETRY_S = (0.2, 5.0)
CONNECTION_CHECK_S = 0.25            # the connection looked at this often when nothing happens
STALL_LOOK_S = 2.0                   # the stream's last sequence compared with what came this often
STALL_S = 10.0                      # events in the stream not delivered for this long: a new session
MAX_REQUEST = 4096


def _appliance_of(subject: str) -> str:
    """``appliance.<name>.events`` -> name ('' for anything else)."""
    parts = subject.split(".")
    return parts[1] if len(parts) == 3 else ""


def _keeps(info, subject: str) -> bool:
    """Whether the stream (its StreamInfo) takes ``subject``."""
    return any(covers(pattern, subject) for pattern in info.config.subjects or ())


def _keeps_marks(info) -> bool:
    return _keeps(info, "appliance.x.marks")


def _stream_sequence(message) -> int:
    """The stream sequence of a delivered event, read from its reply subject (``$JS.ACK.<stream>.
    <consumer>.<delivered>.<stream seq>...``, 9 tokens; 11 or more with a domain and account hash)
    without building nats-py's metadata object for each event; that object for anything else."""
    tokens = (message.reply or "").split(".")
    at = 5 if len(tokens) == 9 else 7 if len(tokens) >= 11 else None
    if at is not None and tokens[0] == "$JS" and tokens[1] == "ACK" and tokens[at].isdigit():
        return int(tokens[at])
    try:
        return message.metadata.sequence.stream
    except Exception:
        return 0


class RiskHub:
    """``run()`` until ``stop()``; ``book``, ``figures``, ``commands_sent`` and the counters for tests."""

    def __init__(self, config: RiskHubConfig):
        self.config = config
        self.book = FirmBook()
        self.figures: dict = self.book.figures()
        self.garbage = 0                  # events, marks and requests dropped as not what they must be
        self.connected = False
        self.caught_up = False
        self.commands_sent: list[dict] = []
        self.acknowledged: set = set()    # breaches an ACTIVATE accepted as they stood
        self.fired: set = set()           # breaches a command was sent for (until they clear)
        self._dirty = False
        self._said: dict = {}
        self._nc = None
        self._stopping: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None   # set by what the limits must see at once (caught up)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False
        self._command_id = 0
        self._caught_up_at = 0            # the stream's last sequence when this session started
        self._read_to = 0                 # the last stream sequence delivered to this session
        self._read_at = 0.0               # when (monotonic) the last one came

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """From any thread."""
        self._stop_requested = True
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake_to_stop)
            except RuntimeError:           # the loop closed meanwhile: the hub has stopped
                pass

    def _wake_to_stop(self) -> None:
        self._stopping.set()
        self._changed.set()

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._changed = asyncio.Event()
        if self._stop_requested:
            self._stopping.set()
        backoff = RETRY_S[0]
        while not self._stopping.is_set():
            nc = None
            try:
                nc = await connect_nats(self.config, f"risk-hub-{self.config.name}")
                backoff = RETRY_S[0]
                await self._session(nc)
            except Exception as exc:        # nats-py's errors, OSError, timeouts: reconnect after a while
                self._say("connection", f"risk hub: NATS {self.config.url}: {type(exc).__name__}: {exc}; retrying")
            finally:
                self.connected = False
                self._nc = None
                if nc is not None:
                    try:
                        await asyncio.wait_for(nc.close(), 2)
                    except Exception:
                        pass
            try:
                await asyncio.wait_for(self._stopping.wait(), backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(RETRY_S[1], backoff * 2)

    def _say(self, kind: str, text: str, level=logging.WARNING) -> None:
        """Log once per kind and text (a flood of one kind of garbage is one line, then counted)."""
        if self._said.get(kind) != text:
            self._said[kind] = text
            log.log(level, "%s", text)

    # ------------------------------------------------------------------ one connection

    async def _session(self, nc) -> None:
        from nats.js.errors import NotFoundError
        js = nc.jetstream(timeout=5)
        self.book = FirmBook()                       # rebuilt from the stream at every connection
        self._read_to, self._read_at = 0, time.monotonic()
        self.caught_up, self.fired = False, set()
        marks_kept = True                            # the first drop copy makes the stream with the marks
        try:
            info = await js.stream_info(self.config.stream)
            self._caught_up_at = info.state.last_seq
            marks_kept = _keeps_marks(info)
            if _keeps(info, COMMANDS_SUBJECT):
                self.acknowledged = set()            # rebuilt from the commands in the stream
        except NotFoundError:
            self._caught_up_at = 0                   # no appliance has published yet
        self._nc = nc
        self.connected = True
        log.info("risk hub %s connected to %s: reading stream %s from its first message (%d held)",
                 self.config.name, self.config.url, self.config.stream, self._caught_up_at)
        subscriptions = [await nc.subscribe(self.config.control_subject, cb=self._on_request)]
        if not marks_kept:
            self._say("marks", f"risk hub: stream {self.config.stream} does not keep {MARKS_SUBJECT}: marks taken "
                               "live, the peak P&L is not rebuilt at a restart (a drop copy adds the subject)")
            subscriptions.append(await nc.subscribe(MARKS_SUBJECT, cb=self._on_marks))
        waiting = None
        if self._caught_up_at:
            subscriptions.append(await self._subscribe_events(js, marks_kept))
        else:
            self._caught_up()                        # nothing to read yet: the first drop copy makes the stream
            waiting = asyncio.ensure_future(self._subscribe_when_created(js))
        next_beat = next_look = 0.0
        beat = 0
        try:
            while not self._stopping.is_set():
                if not nc.is_connected:
                    raise ConnectionError("the connection to NATS was lost")
                now = time.monotonic()
                if now >= next_beat:
                    beat += 1
                    await nc.publish(HEARTBEAT_SUBJECT, json.dumps(
                        {"hub": self.config.name, "seq": beat, "time_ns": time.time_ns(),
                         "caught_up": self.caught_up}).encode())
                    next_beat = now + self.config.heartbeat_ms / 1000
                if self._dirty and self.caught_up:
                    self._dirty = False
                    await self.check_limits()
                if now >= next_look:
                    next_look = now + STALL_LOOK_S
                    await self._look_for_a_stall(js)
                try:                                 # woken by a change (limits at once), a stop, or the next beat
                    await asyncio.wait_for(self._changed.wait(),
                                           max(0.0, min(next_beat - time.monotonic(), CONNECTION_CHECK_S)))
                except asyncio.TimeoutError:
                    pass
                self._changed.clear()
        finally:
            if waiting is not None:
                waiting.cancel()
                if waiting.done() and not waiting.cancelled() and waiting.exception() is None:
                    subscriptions.append(waiting.result())
            for sub in subscriptions:
                if sub is not None:
                    try:
                        await sub.unsubscribe()
                    except Exception:
                        pass

    async def _look_for_a_stall(self, js) -> None:
        """The stream holds events this session was not given for ``STALL_S`` (its consumer lost with
        a cluster's restart, say): the session ends and the next one reads the stream again."""
        from nats.js.errors import NotFoundError
        try:
            last = (await asyncio.wait_for(js.stream_info(self.config.stream), STALL_LOOK_S)).state.last_seq
        except (NotFoundError, asyncio.TimeoutError):
            return                                    # not made yet, or slow to say: looked at again later
        if last > self._read_to and time.monotonic() - self._read_at > STALL_S:
            raise ConnectionError(f"the stream holds events up to {last} but none after {self._read_to} came "
                                  f"for {STALL_S:g} s: reading it again")

    async def _subscribe_events(self, js, marks_kept: bool = True):
        """Every event (and mark) of the stream from its first message, then live (an ordered
        consumer: in stream order, no acknowledgements, recreated by the client after a gap)."""
        from nats.js.api import DeliverPolicy
        return await js.subscribe(STREAM_FILTER if marks_kept else EVENTS_SUBJECT, stream=self.config.stream,
                                  cb=self._on_event, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)

    async def _subscribe_when_created(self, js):
        """The stream does not exist yet (the first drop copy creates it): look every 0.2 s."""
        from nats.js.errors import NotFoundError
        while True:
            try:
                info = await js.stream_info(self.config.stream)
            except NotFoundError:
                await asyncio.sleep(0.2)
                continue
            return await self._subscribe_events(js, _keeps_marks(info))

    def _changed_now(self) -> None:
        """Something the limits must see: the loop wakes at once (while replaying: at the end)."""
        self._dirty = True
        if self.caught_up:
            self._changed.set()

    def _caught_up(self) -> None:
        self.caught_up = True
        self._changed_now()
        self.figures = self.book.figures()
        log.info("risk hub %s caught up with the stream: %d events applied from %d appliances", self.config.name,
                 self.book.applied, len(self.book.appliances))

    # ------------------------------------------------------------------ input

    async def _on_event(self, message) -> None:
        """One message of the stream: an event, an appliance's marks (``.marks``) or a firm command."""
        if message.subject.endswith(".marks"):
            await self._on_marks(message)
        elif message.subject == COMMANDS_SUBJECT:
            self._command_read_again(message.data)
        else:
            try:
                self.book.apply(_appliance_of(message.subject), decode_event(message.data))
            except (EventError, ValueError, RecursionError) as exc:
                self.garbage += 1
                self._say("event", f"risk hub: an event on {message.subject[:80]} dropped: {str(exc)[:200]}")
            self._changed_now()
        sequence = _stream_sequence(message)
        self._read_to = max(self._read_to, sequence)
        self._read_at = time.monotonic()
        if not self.caught_up and sequence >= self._caught_up_at:
            self._caught_up()

    async def _on_marks(self, message) -> None:
        try:
            self.book.apply_marks(_appliance_of(message.subject), json.loads(message.data))
        except (EventError, ValueError, RecursionError) as exc:
            self.garbage += 1
            self._say("marks", f"risk hub: marks on {message.subject[:80]} dropped: {str(exc)[:200]}")
            return
        self._changed_now()

    def _command_read_again(self, data: bytes) -> None:
        """A command of this hub met while reading the stream again: the breaches standing there
        had fired (a breach's command: the hub's ``operator``), or an ACTIVATE accepted them. Live,
        the hub knows already (and its own commands come back after the fact)."""
        if self.caught_up:
            return
        try:
            command = parse_command(data)
        except FirmMessageError as exc:
            self.garbage += 1
            self._say("command", f"risk hub: a firm command in the stream dropped: {exc}")
            return
        if command["hub"] != self.config.name:
            return
        self._command_id = max(self._command_id, command["id"])
        standing = set(self.book.breaches(self.book.figures(), self.config.limits))
        if command["command"] == "ACTIVATE":
            self.acknowledged, self.fired = standing, set()
        elif command["operator"] == self.config.operator:
            self.fired |= standing - self.acknowledged

    async def _on_request(self, message) -> None:
        """An operator's command or a status request; answered with one JSON object."""
        answer = await self._request(message.data)
        if message.reply:
            await self._nc.publish(message.reply, json.dumps(answer).encode())

    async def _request(self, data: bytes) -> dict:
        try:
            request = json.loads(data[:MAX_REQUEST]) if len(data) <= MAX_REQUEST else None
        except (ValueError, RecursionError):
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("command"), str):
            self.garbage += 1
            return {"ok": False, "error": 'a request is a JSON object with a string "command"'}
        command = request["command"].upper()
        if command == "STATUS":
            return {"ok": True, "status": self.status()}
        operator, reason = request.get("operator"), request.get("reason", "")
        if command not in FIRM_COMMANDS:
            return {"ok": False, "error": f"unknown command {command[:20]!r} (status, kill, reduce, activate)"}
        if not isinstance(operator, str) or not operator.strip() or len(operator) > 64 or not operator.isprintable():
            return {"ok": False, "error": "a firm command needs --operator NAME (at most 64 printable characters)"}
        if not isinstance(reason, str) or len(reason) > MAX_REASON or not reason.isprintable():
            return {"ok": False, "error": f"reason must be at most {MAX_REASON} printable characters"}
        if command == "ACTIVATE":
            self.acknowledged = set(self.book.breaches(self.book.figures(), self.config.limits))
            self.fired = set()
        sent = await self.send(command, reason or f"{command.lower()} by operator {operator.strip()}", operator.strip())
        return {"ok": True, "command": sent}

    # ------------------------------------------------------------------ output

    async def send(self, command: str, reason: str, operator: str) -> dict:
        """Publish one firm command (and flush it: the decision's time is in it)."""
        self._command_id += 1
        sent = {"command": command, "reason": reason[:MAX_REASON], "operator": operator[:64], "hub": self.config.name,
                "id": self._command_id, "time_ns": time.time_ns()}
        await self._nc.publish(COMMANDS_SUBJECT, json.dumps(sent).encode())
        await self._nc.flush(2)
        self.commands_sent.append(sent)
        log.warning("FIRM %s sent to every appliance by %s: %s", command, operator, reason)
        return sent

    async def check_limits(self) -> None:
        """The firm's figures against its limits: a new breach sends ``on_breach`` (once)."""
        self.figures = figures = self.book.figures()
        breaches = self.book.breaches(figures, self.config.limits)
        self.acknowledged &= set(breaches)           # a breach that cleared may fire again later
        self.fired &= set(breaches)
        new = {key: text for key, text in breaches.items() if key not in self.acknowledged and key not in self.fired}
        if not new:
            return
        self.fired |= set(new)
        reasons = "; ".join(f"{key[0]}: {text}" for key, text in sorted(new.items()))
        await self.send(self.config.on_breach.upper(), reasons, self.config.operator)

    def status(self) -> dict:
        """The hub's figures as JSON-able values (money in dollars)."""
        f = self.figures = self.book.figures() if self.caught_up else self.figures
        money = ("gross_exposure", "net_exposure", "realized_pnl", "unrealized_pnl", "pnl", "peak_pnl", "drawdown")
        out = {k: (dollars(v) if k in money else v) for k, v in f.items() if k != "symbols"}
        out["symbols"] = {s: {**v, "mark": dollars(v["mark"]), "realized_pnl": dollars(v["realized_pnl"]),
                              "unrealized_pnl": dollars(v["unrealized_pnl"]), "exposure": dollars(v["exposure"])}
                          for s, v in f["symbols"].items()}
        out.update(hub=self.config.name, connected=self.connected, caught_up=self.caught_up, garbage=self.garbage,
                   breaches=[{"reason": k[0], "symbol": k[1], "detail": t}
                             for k, t in sorted(self.book.breaches(f, self.config.limits).items())],
                   commands_sent=len(self.commands_sent))
        return out
