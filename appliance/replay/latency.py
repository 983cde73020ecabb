"""The latency model of a replay: three constants in ns, given on a command line or read from a live run.

``feed_ns``: a recorded event at venue time t reaches the strategy at t + feed_ns (no look-ahead).
``entry_ns``: an order, cancel or replace the strategy sends at t reaches the venue at t + entry_ns.
``ack_ns``: what the venue says at t (accepted, executed, canceled...) reaches the strategy at t + ack_ns.

From a live run (``Latency.from_json``): the p50 of the appliance's per-hop histograms
(``appliance.oms.latency``), as ``appliance bench e2e --json`` prints them (``"hops"``) or as
``appliance status --json`` shows them (``"tick_to_trade"``; also a bare ``{hop: {...}}`` mapping):
feed = the ``feed`` hop (kernel receive -> book update out); entry = ``strategy`` + ``risk`` + ``oms``
(book update out -> bytes to the socket: the strategy's own compute is included, since a backtest's
event time does not move while the strategy computes). The appliance does not measure the wire to the
venue nor the venue's answer back, so ``ack_ns`` (and any hop missing from the file) keeps the value
given beside the file, or the default.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

DEFAULT_FEED_NS = 20_000
DEFAULT_ENTRY_NS = 30_000
DEFAULT_ACK_NS = 30_000
MAX_NS = 60_000_000_000           # a minute: anything longer is a typo, not a latency
NAMES = ("feed", "entry", "ack")


class LatencyError(ValueError):
    """A latency specification or file that cannot be used (the message says which part and why)."""


@dataclass(frozen=True)
class Latency:
    feed_ns: int = DEFAULT_FEED_NS
    entry_ns: int = DEFAULT_ENTRY_NS
    ack_ns: int = DEFAULT_ACK_NS

    def __post_init__(self):
        for name in NAMES:
            value = getattr(self, f"{name}_ns")
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_NS:
                raise LatencyError(f"latency {name}: {value!r} is not an int of ns in 0..{MAX_NS}")

    @classmethod
    def zero(cls) -> "Latency":
        return cls(0, 0, 0)

    @classmethod
    def parse(cls, text: str) -> "Latency":
        """``feed=NS,entry=NS,ack=NS`` (any subset; the rest default), ``zero``, or ``FILE.json[,ack=NS...]``
        (a live run's histograms, see the module docstring; constants after the file override it)."""
        text = text.strip()
        if text == "zero":
            return cls.zero()
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts:
            raise LatencyError("latency: empty (give feed=NS,entry=NS,ack=NS, zero, or a run's JSON file)")
        base = cls()
        if "=" not in parts[0]:
            base = cls.from_json(parts.pop(0))
        values = {}
        for part in parts:
            name, _, number = part.partition("=")
            name = name.strip()
            if name not in NAMES:
                raise LatencyError(f"latency: unknown part {name!r} (known: {', '.join(NAMES)})")
            if f"{name}_ns" in values:
                raise LatencyError(f"latency: {name} given twice")
            try:
                values[f"{name}_ns"] = int(number.strip().replace("_", ""))
            except ValueError:
                raise LatencyError(f"latency {name}: {number.strip()!r} is not an integer of ns") from None
        return replace(base, **values)

    @classmethod
    def from_json(cls, path: str) -> "Latency":
        try:
            with open(path, encoding="utf-8") as file:
                document = json.load(file)
        except OSError as exc:
            raise LatencyError(f"latency file {path}: {exc.strerror or exc}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise LatencyError(f"latency file {path}: not JSON ({exc})") from None
        hops = document
        if isinstance(document, dict):
            for key in ("hops", "tick_to_trade"):
                if isinstance(document.get(key), dict) and "feed" in document[key]:
                    hops = document[key]
                    break
        if not isinstance(hops, dict) or not all(isinstance(hops.get(h), dict) for h in ("feed", "strategy", "risk",
                                                                                         "oms")):
            raise LatencyError(f"latency file {path}: no per-hop histograms (expected 'hops' of bench e2e --json or "
                               f"'tick_to_trade' of a status, with feed, strategy, risk and oms)")

        def p50(hop):
            value = hops[hop].get("p50_ns")
            if value is None:
                raise LatencyError(f"latency file {path}: hop {hop} has no samples (p50_ns is null)")
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise LatencyError(f"latency file {path}: hop {hop}: p50_ns {value!r} is not a duration")
            return int(round(value))
        return cls(feed_ns=p50("feed"), entry_ns=p50("strategy") + p50("risk") + p50("oms"))
