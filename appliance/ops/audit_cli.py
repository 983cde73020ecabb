"""``appliance audit``: the audit trail, from this appliance's OMS journal or from the firm's record.

    appliance audit [--journal PATH | --layout F] [--from ISO] [--to ISO] [--csv|--jsonl] ...
    appliance audit --nats URL [--appliance NAME] [--stream S] [--from ISO] [--to ISO] [--csv|--jsonl] ...

Without ``--nats`` it is the journal's export (``oms/audit_cli.py``). With it, the drop copies'
events in the JetStream stream (``dropcopy/stream_audit.py``): the same columns, plus
``appliance`` and ``trading_day``, for one appliance or all of them. Here, not in ``oms/``: the
order path's packages never import the NATS client. Exit status 0, 1 when the journal or the
stream cannot be read, 2 for a bad command line.
"""
from __future__ import annotations

import argparse
import sys

from appliance.oms import audit_cli as journal_audit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    journal_audit.add_arguments(parser)
    parser.add_argument("--nats", metavar="URL", help="read the firm's record in NATS JetStream instead of a journal "
                        "(nats://HOST:PORT; a cluster's nodes comma-separated)")
    parser.add_argument("--appliance", metavar="NAME", help="with --nats: one appliance's events (default: all)")
    parser.add_argument("--stream", default="APPLIANCE_EVENTS", help="with --nats: the stream (default APPLIANCE_EVENTS)")


def run(args: argparse.Namespace) -> int:
    from appliance.command_io.arguments import UsageError
    if not args.nats:
        if args.appliance:
            raise UsageError("--appliance goes with --nats")
        return journal_audit.run(args)
    if args.journal:
        raise UsageError("--journal or --nats, not both")
    from types import SimpleNamespace

    from appliance.dropcopy.config import DropCopyConfigError, parse_dropcopy_params
    from appliance.dropcopy.stream_audit import STREAM_COLUMNS, StreamAuditError, read_stream
    from appliance.oms.audit import select
    start, end = journal_audit.time_bounds(args)
    try:       # the URL, stream and appliance name checked as the drop copy's are
        checked = parse_dropcopy_params({"nats": {"url": args.nats, "stream": args.stream},
                                         "appliance": args.appliance or "all"},
                                        SimpleNamespace(path="", name="all", processes={}), "")
    except DropCopyConfigError as exc:
        raise UsageError(f"--{exc.key_path.split('.')[-1].replace('url', 'nats')}: {exc.reason}") from None

    def warn(text: str) -> None:
        print(f"appliance audit: warning: {text}", file=sys.stderr)
    try:
        rows = read_stream(checked.url, checked.stream, args.appliance, warn)
    except StreamAuditError as exc:
        print(f"appliance audit: {exc}", file=sys.stderr)
        return 1
    journal_audit.write_rows(select(rows, start, end, args.orders_only), args, STREAM_COLUMNS)
    return 0
