"""What must hold after any mix of faults, read from the exchange's own records and the OMS journal.

The exchange writes every OUCH message both ways with its own receive/send time
(``ouch-<firm>.log``, one file per exchange run: a restarted venue starts a new one); the OMS
journals every order it sent, every venue message it got and every control event. The checks:

- positions: the OMS's positions equal the venue's, summed over its runs (a fill is a venue
  Executed message; the side comes from the venue's own Accepted/Replaced for that token);
- fills: the same fills on both sides, one for one ((token, match number) is one fill), and no
  fill applied twice;
- tokens: no order token entered twice at the venue, across all its runs;
- no order while risk was dead: no Enter or Replace Order reached the venue after risk had been
  dead longer than the OMS's risk heartbeat limit, until the restarted risk asked for its
  snapshot (it approves nothing before that);
- no order while the kill switch was latched: none from shortly after the kill until the reset;
- flat after the last kill: the venue holds no live order of the firm.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from appliance.exchange.records import read_ouch_log
from appliance.messages.codes import ControlEventKind
from appliance.oms import journal_records as jr
from appliance.oms.journal_records import RecordType
from appliance.oms.journal_format import read_records
from appliance.wire import ouch

SELLS = ("S", "T", "E")
SLACK_NS = 100_000_000          # the wire, the exchange's own processing, and our clock reading of a kill


@dataclass
class VenueTruth:
    fills: list = field(default_factory=list)          # (run, token, match, symbol, signed shares)
    entered: list = field(default_factory=list)        # (time ns, type, token) of every Enter/Replace Order
    positions: Counter = field(default_factory=Counter)


def venue_truth(runs: list[Path], firm: str) -> VenueTruth:
    truth = VenueTruth()
    for run, directory in enumerate(runs):
        path = Path(directory) / f"ouch-{firm}.log"
        if not path.exists():
            continue
        side_of: dict[str, tuple[str, str]] = {}
        for record in read_ouch_log(path):
            if record.direction == "I":
                kind = record.message[:1]
                if kind in (b"O", b"U"):
                    message = ouch.decode_inbound(record.message)
                    token = message["order_token"] if kind == b"O" else message["replacement_order_token"]
                    truth.entered.append((record.timestamp, kind.decode(), token))
                continue
            message = ouch.decode_outbound(record.message)
            kind = message["type"]
            if kind == "A":
                side_of[message["order_token"]] = (message["buy_sell_indicator"], message["stock"])
            elif kind == "U":
                side_of[message["replacement_order_token"]] = (message["buy_sell_indicator"], message["stock"])
            elif kind == "E":
                side, symbol = side_of[message["order_token"]]
                shares = message["executed_shares"]
                signed = -shares if side in SELLS else shares
                truth.fills.append((run, message["order_token"], message["match_number"], symbol.strip(), signed))
                truth.positions[symbol.strip()] += signed
    return truth


@dataclass
class JournalTruth:
    fills: list = field(default_factory=list)          # (token, match) of every Executed the OMS journaled
    kills: list = field(default_factory=list)          # journal time of each KILL (risk's kill switch)
    resets: list = field(default_factory=list)         # risk's own time of each RESET
    snapshot_requests: list = field(default_factory=list)   # journal time of each risk (re)start's request


def journal_truth(path: Path) -> JournalTruth:
    truth = JournalTruth()
    records, _found, _header = read_records(str(path))
    for record in records:
        if record.type == RecordType.EXCHANGE_MESSAGE:
            _sequence, message = jr.EXCHANGE_MESSAGE.parse(record.payload)
            if message[:1] == b"E":
                fields = ouch.decode_outbound(message)
                truth.fills.append((fields["order_token"], fields["match_number"]))
        elif record.type == RecordType.CONTROL:
            control = jr.CONTROL.parse(record.payload)
            if control.kind == ControlEventKind.KILL:
                truth.kills.append(record.timestamp_ns)
            elif control.kind == ControlEventKind.RESET:
                truth.resets.append(control.t_ns)
            elif control.kind == ControlEventKind.SNAPSHOT_REQUEST:
                truth.snapshot_requests.append(record.timestamp_ns)
    return truth


def check(*, venue: VenueTruth, journal: JournalTruth, oms_positions: dict, risk_kills_ns: list[int],
          risk_limit_ns: int, live_at_venue: int) -> list[str]:
    """Every invariant that does not hold, as a sentence (empty: all hold)."""
    broken = []
    mine = {s: p for s, p in oms_positions.items() if p}
    theirs = {s: p for s, p in venue.positions.items() if p}
    if mine != theirs:
        broken.append(f"positions differ: the OMS has {mine}, the venue {theirs}")
    venue_fills = Counter((token, match) for _run, token, match, _s, _q in venue.fills)
    oms_fills = Counter(journal.fills)
    doubled = [k for k, n in oms_fills.items() if n > 1]
    if doubled:
        broken.append(f"fills journaled twice: {doubled[:5]}")
    if venue_fills != oms_fills:
        broken.append(f"fills differ: {len(venue.fills)} at the venue, {len(journal.fills)} in the journal; "
                      f"only at the venue {list((venue_fills - oms_fills).items())[:5]}, "
                      f"only in the journal {list((oms_fills - venue_fills).items())[:5]}")
    tokens = Counter(token for _t, _kind, token in venue.entered)
    reused = [t for t, n in tokens.items() if n > 1]
    if reused:
        broken.append(f"tokens entered twice at the venue: {reused[:5]}")
    for killed in risk_kills_ns:
        back = min((t for t in journal.snapshot_requests if t > killed), default=None)
        start = killed + risk_limit_ns + SLACK_NS
        late = [(t - killed) / 1e6 for t, _kind, _token in venue.entered if start < t and (back is None or t < back)]
        if late:
            broken.append(f"orders reached the venue {late[:5]} ms after risk was killed (limit "
                          f"{risk_limit_ns / 1e6:g} ms), before the new risk rebuilt")
    for killed in journal.kills:
        reset = min((t for t in journal.resets if t > killed), default=None)
        during = [(t - killed) / 1e6 for t, _kind, _token in venue.entered
                  if killed + SLACK_NS < t and (reset is None or t < reset)]
        if during:
            broken.append(f"orders reached the venue {during[:5]} ms after the kill switch latched")
    if live_at_venue:
        broken.append(f"{live_at_venue} orders still live at the venue after the last kill")
    return broken
