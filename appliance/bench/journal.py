"""``appliance bench journal``: the OMS journal's appends per second per durability policy, and recovery.

**Appends**: a fresh journal per policy (``per_event``, ``group`` with ``--group-commit-us``,
``page_cache``) in ``--directory`` (default: a temporary directory under /tmp, on this machine's
disk), then ``Journal.append`` of a 116-byte ORDER_SENT payload (the record the OMS writes for
every new order) ``--records`` times (``--per-event-records`` for ``per_event``, whose every
append waits for the disk), timed as one batch with ``time.perf_counter_ns``; the journal is
closed (a final sync) outside the timed region. The garbage collector is off while timing.

**Recovery**: a journal of ``--recovery-records`` records shaped like a trading day (per order:
an ORDER_SENT, the venue's Accepted, then its Executed or Canceled, each an EXCHANGE_MESSAGE),
written with ``page_cache``, closed, then opened again and timed: ``open`` (scan every header,
check every CRC-32C in one numpy batch, find the end) is ``recovery_s``; ``rebuild`` (the OMS's
orders, positions and token counter from those records, ``recovery.rebuild``) is reported next to
it. ``recovery_1m_s`` scales ``recovery_s`` linearly to 1,000,000 records when fewer were written.

``--json`` prints ``{"results": {"journal": {"<policy>_appends_per_s": ..., "recovery_1m_s": ...}}}``
plus the details. Targets: ``page_cache`` at least 1,000,000 appends/s; recovery of 1 million
records under 2 s.
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time

from appliance.command_io.arguments import bounded, positive_int

POLICIES = ("per_event", "group", "page_cache")
TARGET_PAGE_CACHE_APPENDS_PER_S = 1_000_000
TARGET_RECOVERY_1M_S = 2.0
MILLION = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=positive_int, default=500_000,
                        help="appends timed for group and page_cache (default 500000)")
    parser.add_argument("--per-event-records", type=positive_int, default=2_000,
                        help="appends timed for per_event, one disk sync each (default 2000)")
    parser.add_argument("--recovery-records", type=positive_int, default=MILLION,
                        help="records in the journal that is recovered (default 1000000)")
    parser.add_argument("--group-commit-us", type=bounded(int, 10, 10_000_000), default=1000,
                        help="group commit interval (default 1000 us, the OMS default)")
    parser.add_argument("--directory", default=None, help="where the journals are written (default: a /tmp dir)")


def _order_sent_payload() -> bytes:
    from appliance.oms import journal_records as jr
    return jr.ORDER_SENT.pack(1, ord("B"), 0, 99998, 123456, 0, 7, 0, 100, 1_900_000, b"AAPL    ", b"0AB1000000001Z",
                              b"", 1, 2, 3, 4, ord("Y"), ord("A"), ord("N"), 0)


def measure_appends(directory: str, policy: str, records: int, group_commit_us: int) -> dict:
    from appliance.oms.journal import Journal
    from appliance.oms.journal_format import FILE_HEADER_SIZE, RECORD_HEADER_SIZE, padded
    payload = _order_sent_payload()
    size = FILE_HEADER_SIZE + records * padded(RECORD_HEADER_SIZE + len(payload)) + (8 << 20)
    path = os.path.join(directory, f"appends-{policy}.bin")
    journal = Journal.open(path, size, policy, group_commit_us, reserve_bytes=0)
    append = journal.append
    pc = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        started = pc()
        now = time.time_ns()
        for _ in range(records):
            append(1, payload, now)
        elapsed = pc() - started
    finally:
        gc.enable()
        syncs = journal.syncs
        journal.close()
        os.unlink(path)
    return {"records": records, "seconds": elapsed / 1e9, "appends_per_s": records / (elapsed / 1e9),
            "syncs": syncs, "record_bytes": padded(RECORD_HEADER_SIZE + len(payload))}


def _write_day(path: str, records: int) -> int:
    """A journal of ``records`` records: ORDER_SENT, Accepted, then Executed or Canceled per order."""
    from appliance.oms import journal_records as jr
    from appliance.oms.journal_records import RecordType
    from appliance.oms.journal import Journal
    from appliance.oms.journal_format import FILE_HEADER_SIZE, RECORD_HEADER_SIZE, padded
    from appliance.wire import ouch
    size = FILE_HEADER_SIZE + records * padded(RECORD_HEADER_SIZE + jr.ORDER_SENT.size) + (8 << 20)   # the largest
    journal = Journal.open(path, size, "page_cache", reserve_bytes=0)
    stock = b"AAPL    "
    sequence = 0
    now = time.time_ns()
    written = 0
    order = 0
    try:
        while written < records:
            order += 1
            token = b"0AB1" + f"{order:010d}".encode()
            journal.append(RecordType.ORDER_SENT, jr.ORDER_SENT.pack(1, ord("B"), 0, 99998, order, 0, 7, 0, 100,
                                                                     1_900_000, stock, token), now)
            written += 1
            if written == records:
                break
            sequence += 1
            accepted = ouch.ACCEPTED.struct.pack(b"A", 0, token, b"B", 100, stock, 1_900_000, 99998, b"ALGO", b"Y",
                                                 order, b"A", b"N", 0, b"N", b"L", b" ")
            journal.append(RecordType.EXCHANGE_MESSAGE, jr.EXCHANGE_MESSAGE.pack(sequence, accepted), now)
            written += 1
            if written == records:
                break
            sequence += 1
            if order % 2:
                answer = ouch.EXECUTED.struct.pack(b"E", 0, token, 100, 1_900_000, b"R", order)
            else:
                answer = ouch.CANCELED.struct.pack(b"C", 0, token, 100, b"U")
            journal.append(RecordType.EXCHANGE_MESSAGE, jr.EXCHANGE_MESSAGE.pack(sequence, answer), now)
            written += 1
    finally:
        journal.close()
    return size


def measure_recovery(directory: str, records: int) -> dict:
    from appliance.oms.journal import Journal
    from appliance.oms.recovery import rebuild
    path = os.path.join(directory, "recovery.bin")
    size = _write_day(path, records)
    try:
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter_ns()
            journal = Journal.open(path, size, "page_cache")
            opened = time.perf_counter_ns()
            found = journal.recovered_records
            state = rebuild(journal.records(), ["AAPL", "MSFT", "SPY"])
            rebuilt = time.perf_counter_ns()
        finally:
            gc.enable()
        journal.close()
    finally:
        os.unlink(path)
    open_s = (opened - started) / 1e9
    rebuild_s = (rebuilt - opened) / 1e9
    return {"records": found, "open_s": open_s, "rebuild_s": rebuild_s, "orders": len(state.orders.by_token),
            "recovery_1m_s": open_s * MILLION / found if found else None,
            "rebuild_1m_s": rebuild_s * MILLION / found if found else None, "extrapolated": found != MILLION}


def measure(records: int, per_event_records: int, recovery_records: int, group_commit_us: int,
            directory: str | None) -> dict:
    from appliance.oms.crc32c import IMPLEMENTATION
    own = directory is None
    directory = tempfile.mkdtemp(prefix="bench-journal-", dir="/tmp") if own else directory
    os.makedirs(directory, exist_ok=True)
    try:
        results: dict = {"crc32c": IMPLEMENTATION, "group_commit_us": group_commit_us}
        details = {}
        for policy in POLICIES:
            n = per_event_records if policy == "per_event" else records
            details[policy] = measure_appends(directory, policy, n, group_commit_us)
            results[f"{policy}_appends_per_s"] = details[policy]["appends_per_s"]
        recovery = measure_recovery(directory, recovery_records)
        results["recovery_1m_s"] = recovery["recovery_1m_s"]
        results["rebuild_1m_s"] = recovery["rebuild_1m_s"]
        results["recovery"] = recovery
        results["appends"] = details
        results["targets"] = {"page_cache_appends_per_s": TARGET_PAGE_CACHE_APPENDS_PER_S,
                              "recovery_1m_s": TARGET_RECOVERY_1M_S}
        results["meets_targets"] = {
            "page_cache_appends_per_s": results["page_cache_appends_per_s"] >= TARGET_PAGE_CACHE_APPENDS_PER_S,
            "recovery_1m_s": recovery["recovery_1m_s"] is not None
            and recovery["recovery_1m_s"] < TARGET_RECOVERY_1M_S}
        return results
    finally:
        if own:
            shutil.rmtree(directory, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    from appliance.bench.timing import publish
    errors: dict[str, str] = {}
    results: dict = {}
    try:
        results["journal"] = measure(args.records, args.per_event_records, args.recovery_records,
                                     args.group_commit_us, args.directory)
    except Exception as exc:            # noqa: BLE001 - reported, exit status 1
        errors["journal"] = f"{type(exc).__name__}: {exc}"
    return publish("journal", results, errors, getattr(args, "json", False), _print_table)


def _print_table(report: dict) -> None:
    journal = report["results"].get("journal")
    if journal is None:
        print(f"journal: FAILED: {report['errors'].get('journal')}")
        return
    m = report["machine"]
    print(f"OMS journal: CRC-32C by {journal['crc32c']}; Python {m['python']} on {m['cpu_model'] or 'unknown CPU'}")
    header = f"{'policy':<12} {'records':>10} {'appends/s':>12} {'syncs':>8} {'target':>12}"
    print(header)
    print("-" * len(header))
    for policy in POLICIES:
        d = journal["appends"][policy]
        target = f">= {TARGET_PAGE_CACHE_APPENDS_PER_S:,}" if policy == "page_cache" else ""
        name = f"group {journal['group_commit_us']}us" if policy == "group" else policy
        print(f"{name:<12} {d['records']:>10,} {d['appends_per_s']:>12,.0f} {d['syncs']:>8,} {target:>12}")
    r = journal["recovery"]
    print(f"recovery of {r['records']:,} records: open (scan + CRC check) {r['open_s']:.3f} s"
          f" -> {r['recovery_1m_s']:.3f} s per million (target < {TARGET_RECOVERY_1M_S:g} s"
          f"{', extrapolated' if r['extrapolated'] else ''}); rebuild of {r['orders']:,} orders "
          f"{r['rebuild_s']:.3f} s -> {r['rebuild_1m_s']:.3f} s per million records")
