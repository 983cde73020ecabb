"""Journal replication as operators see it: the primary OMS's ``oms.replication.*`` counters read into
one summary, for ``appliance status``, shmtop and the Prometheus exporter alike (as ``latency.py`` is
for tick-to-trade). The codes of the mode and transport counters are defined here, once."""
from __future__ import annotations

PREFIX = "oms.replication."
MODES = {1: "sync", 2: "async"}                  # oms.replication.mode
TRANSPORTS = {1: "tcp", 2: "shm"}                # oms.replication.transport
MODE_CODES = {name: code for code, name in MODES.items()}
TRANSPORT_CODES = {name: code for code, name in TRANSPORTS.items()}


def summary(counters: dict[str, int]) -> dict | None:
    """The replication counters (``counters``: label -> value) as a dict, with the role, mode,
    transport and lag spelled out; None when the OMS does not replicate its journal. The role is
    the layout's OMS's: the primary (the standby is not a process of the layout and has no counters)."""
    raw = {label[len(PREFIX):]: value for label, value in counters.items() if label.startswith(PREFIX)}
    if not raw:
        return None
    return {**raw, "role": "primary", "mode": MODES.get(raw.get("mode", 0), "unknown"),
            "transport": TRANSPORTS.get(raw.get("transport", 0), "unknown"),
            "standby": "up" if raw.get("connected") else "down",
            "lag_us": round(raw.get("lag_ns", 0) / 1e3, 1), "ack_rtt_us": round(raw.get("ack_rtt_ns", 0) / 1e3, 1)}


def one_line(replication: dict) -> str:
    """``primary sync/shm, standby up (pid 123) lag 0 rec 0.0 us``: the status line's and shmtop's words."""
    pid = f" (pid {replication['standby_pid']})" if replication.get("standby_pid") else ""
    return (f"primary {replication['mode']}/{replication['transport']}, standby "
            f"{'up' if replication['standby'] == 'up' else 'DOWN'}{pid} lag {replication.get('lag_records', 0)} rec "
            f"{replication['lag_us']:,.1f} us")
