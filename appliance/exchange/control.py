"""The exchange's control interface: a UNIX socket, one JSON object per line each way.

A request is ``{"command": NAME, ...arguments}``; the answer is ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. Requests are untrusted like any input: a line that is not
JSON, an unknown command or a bad argument gets an error answer and the connection stays
usable; a line over ``MAX_LINE`` bytes closes the connection.

Commands (``appliance exchange ctl --help`` shows the same list):

  status                              counters, ports, sessions (with cancel on disconnect), faults
  halt SYMBOL / resume SYMBOL         ITCH 'H'; entries rejected 'H' while halted
  faults [drop= duplicate= reorder=]  set the feed's packet fault probabilities (0..1)
  drop-next COUNT                     drop the next COUNT feed packets (a deterministic gap)
  burst COUNT                         COUNT background operations at once
  background RATE                     background operations per second (0 stops the flow)
  disconnect FIRM                     drop the firm's order-entry TCP connection (with cancel on
                                      disconnect, its open orders are canceled 'Z')
  cancel-all [firm=] [symbol=]        the kill switch: cancel live orders (Canceled 'S')
  book SYMBOL                         the displayed book as the feed shows it, order by order
  end                                 end the trading day now
  start                               replay (--replay --replay-hold): let the recorded day flow
                                      (halt, resume, burst, background, cancel-all and book: live only)

Every command may carry ``operator=NAME`` (``appliance exchange ctl --operator NAME``); every one
that changes something (all but status and book) is logged with it and with the caller's uid and
pid from ``SO_PEERCRED``. The socket is 0600 in a private directory (``command_io/private_socket.py``);
a client silent for ``IDLE_TIMEOUT_S`` or not reading its answers is disconnected, and beyond
``MAX_CLIENTS`` connections a new one is told so and closed.
"""
from __future__ import annotations

import asyncio
import json

from appliance.command_io.json_lines import BadRequest, parse_request
from appliance.command_io.private_socket import bind_private, peer_of

MAX_LINE = 64 * 1024
MAX_BURST = 1_000_000
MAX_CLIENTS = 32
MAX_OPERATOR = 64
IDLE_TIMEOUT_S = 30.0
READ_ONLY = frozenset(("status", "book"))


class ControlError(Exception):
    """A request the exchange cannot act on; becomes ``{"ok": false, "error": ...}``."""


def _probability(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ControlError(f"{name} must be a probability 0..1, got {value!r}")
    return float(value)


def _count(name: str, value, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise ControlError(f"{name} must be an integer 0..{high}, got {value!r}")
    return value


class ControlServer:
    def __init__(self, exchange) -> None:
        self.exchange = exchange

    async def start(self, path: str):
        self.clients = 0
        self.dropped = 0                  # connections closed for silence, a long line, not reading, too many
        return await asyncio.start_unix_server(self._client, sock=bind_private(path), limit=MAX_LINE)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.clients >= MAX_CLIENTS:
            self.dropped += 1
            writer.write(b'{"ok": false, "error": "too many control connections"}\n')
            writer.close()
            return
        self.clients += 1
        caller = peer_of(writer.get_extra_info("socket"))
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT_S)
                except (asyncio.LimitOverrunError, ValueError):
                    self.dropped += 1
                    writer.write(b'{"ok": false, "error": "request line too long"}\n')
                    break
                except asyncio.TimeoutError:
                    self.dropped += 1
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                writer.write((json.dumps(self.handle_line(line, caller)) + "\n").encode())
                try:
                    await asyncio.wait_for(writer.drain(), IDLE_TIMEOUT_S)
                except asyncio.TimeoutError:          # it sends and never reads
                    self.dropped += 1
                    break
        except ConnectionError:
            pass
        finally:
            self.clients -= 1
            writer.close()

    def handle_line(self, line: bytes, caller=None) -> dict:
        try:
            request = parse_request(line)
        except BadRequest as exc:
            return {"ok": False, "error": str(exc)}
        try:
            operator = request.pop("operator", "")
            if not isinstance(operator, str) or len(operator) > MAX_OPERATOR or not operator.isprintable():
                raise ControlError(f"operator must be a string of at most {MAX_OPERATOR} printable characters")
            answer = {"ok": True, **self.execute(request)}
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        if request["command"] not in READ_ONLY:
            arguments = " ".join(f"{k}={v}" for k, v in request.items() if k != "command")
            self.exchange.log(f"control: {request['command']}{' ' + arguments if arguments else ''} by "
                              f"{operator.strip() or '(no name)'} ({caller or 'caller unknown'})")
        return answer

    def execute(self, request: dict) -> dict:
        ex = self.exchange
        venue = ex.venue
        command = request["command"]
        allowed = COMMAND_ARGUMENTS.get(command)
        if allowed is None:
            raise ControlError(f"unknown command {command!r}; commands: {', '.join(COMMAND_ARGUMENTS)}")
        unknown = set(request) - {"command"} - set(allowed)
        if unknown:
            raise ControlError(f"{command}: unknown argument(s) {', '.join(sorted(unknown))}; "
                               f"allowed: {', '.join(allowed) or 'none'}")
        if command in venue.unsupported_commands:
            raise ControlError(f"{command}: not available in {'replay' if command != 'start' else 'a live day'}")
        for name in ("symbol", "firm"):               # looked up in dicts below: a list would be unhashable
            if name in request and not isinstance(request[name], str) and request[name] is not None:
                raise ControlError(f"{command}: {name} must be a string, got {type(request[name]).__name__}")
        if command == "status":
            return ex.status()
        if command in ("halt", "resume"):
            symbol = request.get("symbol")
            if symbol not in venue.engine.books:
                raise ControlError(f"{command}: unknown symbol {symbol!r}")
            if venue.state != "open":
                raise ControlError(f"{command}: the day is {venue.state}")
            changed = venue.halt(symbol) if command == "halt" else venue.resume(symbol)
            ex.pump_touched()
            return {"changed": changed}
        if command == "faults":
            faults = venue.publisher.faults
            for name in ("drop", "duplicate", "reorder"):
                if name in request:
                    setattr(faults, name, _probability(name, request[name]))
            return {"faults": {"drop": faults.drop, "duplicate": faults.duplicate, "reorder": faults.reorder}}
        if command == "drop-next":
            venue.publisher.drop_next = _count("count", request.get("count"), 1_000_000)
            return {"drop_next": venue.publisher.drop_next}
        if command == "burst":
            count = _count("count", request.get("count"), MAX_BURST)
            if venue.state != "open":
                raise ControlError(f"burst: the day is {venue.state}")
            done = venue.run_background(count)
            venue.publisher.flush()
            ex.pump_touched()
            return {"operations": done}
        if command == "background":
            rate = request.get("rate")
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 200_000:
                raise ControlError(f"background: rate must be 0..200000 operations/s, got {rate!r}")
            ex.flow.rate = float(rate)
            return {"rate": ex.flow.rate}
        if command == "disconnect":
            firm = request.get("firm")
            if firm not in venue.stores:
                raise ControlError(f"disconnect: unknown firm {firm!r}")
            return {"disconnected": ex.disconnect(firm)}
        if command == "cancel-all":
            firm, symbol = request.get("firm"), request.get("symbol")
            if firm is not None and firm not in venue.engine.firms and firm not in venue.stores:
                raise ControlError(f"cancel-all: unknown firm {firm!r}")
            if symbol is not None and symbol not in venue.engine.books:
                raise ControlError(f"cancel-all: unknown symbol {symbol!r}")
            canceled = venue.cancel_all(firm=firm, symbol=symbol)
            ex.pump_touched()
            return {"canceled": canceled}
        if command == "book":
            symbol = request.get("symbol")
            book = venue.engine.books.get(symbol) if isinstance(symbol, str) else None
            if book is None:
                raise ControlError(f"book: unknown symbol {symbol!r}")
            return {"symbol": symbol, "messages": len(venue.store), "halted": book.halted,
                    "bids": book.bids(displayed_only=True), "asks": book.asks(displayed_only=True),
                    "orders": {str(ref): [o.side, o.price, o.leaves] for ref, o in sorted(book.orders.items())
                               if o.displayed}}
        if command == "start":
            venue.start()
            return {"started": True, "event_time_ns": venue.now_ns}
        if command == "end":
            ex.request_end("control command end")
            return {"ending": True}
        if command == "crash":
            asyncio.get_running_loop().call_later(0.05, ex.crash, "control command crash")
            return {"crashing": True}
        raise AssertionError(command)  # pragma: no cover


COMMAND_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "status": (), "halt": ("symbol",), "resume": ("symbol",), "faults": ("drop", "duplicate", "reorder"),
    "drop-next": ("count",), "burst": ("count",), "background": ("rate",), "disconnect": ("firm",),
    "cancel-all": ("firm", "symbol"), "book": ("symbol",), "end": (), "crash": (), "start": (),
}

