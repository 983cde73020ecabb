"""``appliance audit``: export the OMS journal's audit trail as CSV or JSON lines.

    appliance audit [--journal PATH | --layout shm_layout.yaml] [--from ISO] [--to ISO]
                    [--csv | --jsonl] [--orders-only] [--output FILE]

The journal is read, never written (a torn tail is left for the OMS to truncate; a corrupt
record in the middle is reported on stderr and skipped, the rest exported). Without
``--journal`` the path comes from the layout's ``oms`` process (its ``params.journal``, relative
to the layout file). ``--from`` is inclusive and ``--to`` exclusive; both take ISO 8601 times to
the nanosecond (``2026-01-02T13:45:12.123456789Z``; no zone means UTC; a date alone is midnight
UTC). Columns: ``appliance.oms.audit.COLUMNS``. Exit status 0, 1 when the journal cannot be read,
2 for a bad command line.
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--journal", help="the journal file (default: from the layout's oms process)")
    source.add_argument("--layout", default="shm_layout.yaml", help="the layout naming the journal "
                        "(default shm_layout.yaml)")
    parser.add_argument("--process", default="oms", help="the OMS's process name in the layout (default oms)")
    parser.add_argument("--from", dest="start", metavar="ISO", help="first time exported (inclusive, UTC)")
    parser.add_argument("--to", dest="end", metavar="ISO", help="export before this time (exclusive, UTC)")
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--csv", dest="format", action="store_const", const="csv", help="CSV with a header (default)")
    form.add_argument("--jsonl", dest="format", action="store_const", const="jsonl", help="one JSON object a line")
    parser.add_argument("--orders-only", action="store_true",
                        help="order events only (no control, session or system events)")
    parser.add_argument("--output", "-o", help="write here instead of standard output")
    parser.set_defaults(format="csv")


def journal_from_layout(layout_path: str, process: str) -> str:
    from appliance.oms.config import parse_oms_params
    from appliance.runtime.layout import load_layout
    layout = load_layout(layout_path)
    if process not in layout.processes:
        from appliance.command_io.arguments import UsageError
        raise UsageError(f"{layout_path}: no process named {process!r}")
    return parse_oms_params(layout.processes[process].params, layout.path).journal_path


def run(args: argparse.Namespace) -> int:
    from appliance.command_io.arguments import UsageError
    from appliance.oms.audit import COLUMNS, AuditTrail, select
    from appliance.oms.journal_format import JournalError, read_records

    start, end = time_bounds(args)
    path = args.journal
    if path is None:
        try:
            path = journal_from_layout(args.layout, args.process)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot find the journal from {args.layout}: {exc}") from None
    try:
        records, found, _header = read_records(path, skip_corrupt=True)
    except (OSError, JournalError) as exc:
        print(f"appliance audit: {exc}", file=sys.stderr)
        return 1
    for offset, sequence, reason in found.corrupt:
        print(f"appliance audit: warning: {path}: record {sequence} at offset {offset} is corrupt ({reason}); "
              f"skipped", file=sys.stderr)
    if found.garbage_end > found.end:
        print(f"appliance audit: warning: {path}: torn tail at offset {found.end} ({found.problem}); not exported",
              file=sys.stderr)
    write_rows(select(AuditTrail().rows(records), start, end, args.orders_only), args, COLUMNS)
    return 0


def time_bounds(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """``--from`` and ``--to`` as epoch ns (None when absent); UsageError when they are not times."""
    from appliance.command_io.arguments import UsageError
    from appliance.oms.audit import parse_iso_ns
    try:
        start = parse_iso_ns(args.start) if args.start else None
        end = parse_iso_ns(args.end) if args.end else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if start is not None and end is not None and end <= start:
        raise UsageError("--to must be after --from")
    return start, end


def write_rows(rows, args: argparse.Namespace, columns) -> None:
    """Rows to ``--output`` (or standard output) as CSV with ``columns`` or as JSON lines."""
    import csv
    import json
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        if args.format == "jsonl":
            for row in rows:
                out.write(json.dumps(row) + "\n")
        else:
            writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
