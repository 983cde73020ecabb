"""``appliance audit --nats``: the firm's record read back from the stream as the journal audit's
rows (plus appliance and trading day), for every appliance or one, against a real nats-server."""
from __future__ import annotations

import csv
import io
import json
from types import SimpleNamespace

import pytest

from appliance.cli import main
from appliance.dropcopy.config import parse_dropcopy_params
from appliance.dropcopy.stream_audit import STREAM_COLUMNS
from appliance.oms.audit import AuditTrail, iso_ns
from appliance.oms.journal_format import read_records
from conftest import wait_until
from dropcopy_rig import JournalWriter, Running
from nats_server import nats_server   # noqa: F401  (the fixture)
from riskhub_rig import publish_raw


def journal_rows(path: str, appliance: str) -> list[dict]:
    records, _, header = read_records(path)
    return [{"appliance": appliance, "trading_day": header["trading_day"], **row}
            for row in AuditTrail(["AAPL", "MSFT"]).rows(records)]


def test_the_stream_reads_back_as_the_journals_audit_rows(nats_server, tmp_path, capsys):
    journals, copies = {}, []
    try:
        for name in ("venue1", "venue2"):
            journals[name] = JournalWriter(str(tmp_path / f"{name}.bin"))
            for _ in range(3):
                journals[name].order_life()
            layout = SimpleNamespace(path=str(tmp_path / "layout.yaml"), name=name, processes={})
            copies.append(Running(parse_dropcopy_params({"nats": {"url": nats_server.url}, "appliance": name,
                                                         "journal": str(tmp_path / f"{name}.bin")}, layout)))
        for running, journal in zip(copies, journals.values()):
            wait_until(lambda: running.copy.stats.last_sequence == journal.journal.next_sequence - 1, 30,
                       message="published")
    finally:
        for running in copies:
            running.stop()
        for journal in journals.values():
            journal.close()
    publish_raw(nats_server.url, [("appliance.venue1.events", b"not an event")], stream="APPLIANCE_EVENTS")
    expected = {name: journal_rows(str(tmp_path / f"{name}.bin"), name) for name in journals}

    assert main(["audit", "--nats", nats_server.url, "--jsonl"]) == 0
    out = capsys.readouterr()
    rows = [json.loads(line) for line in out.out.splitlines()]
    assert [r for r in rows if r["appliance"] == "venue1"] == expected["venue1"]
    assert [r for r in rows if r["appliance"] == "venue2"] == expected["venue2"]
    assert "is not a drop copy event: skipped" in out.err

    assert main(["audit", "--nats", nats_server.url, "--appliance", "venue2", "--csv", "--orders-only"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert tuple(table[0]) == STREAM_COLUMNS
    orders = [r for r in expected["venue2"] if r["record"] in ("ORDER_SENT", "EXCHANGE_MESSAGE", "REJECTED_LOCALLY")]
    assert [(r["appliance"], int(r["sequence"])) for r in table] == [("venue2", r["sequence"]) for r in orders]

    later = expected["venue1"][5]["time_ns"]
    assert main(["audit", "--nats", nats_server.url, "--appliance", "venue1", "--from", iso_ns(later),
                 "--jsonl"]) == 0
    assert [json.loads(line)["sequence"] for line in capsys.readouterr().out.splitlines()] == \
        [r["sequence"] for r in expected["venue1"] if r["time_ns"] >= later]


@pytest.mark.parametrize("argv,code,says", [
    (["--nats", "http://127.0.0.1:1"], 2, "--nats: 'http://127.0.0.1:1' must be nats://HOST:PORT"),
    (["--nats", "nats://127.0.0.1:4222", "--appliance", "a.b"], 2, "--appliance:"),
    (["--appliance", "venue1"], 2, "--appliance goes with --nats"),
    (["--nats", "nats://127.0.0.1:4222", "--journal", "j.bin"], 2, "--journal or --nats, not both"),
])
def test_bad_audit_arguments_are_usage_errors(argv, code, says, capsys):
    assert main(["audit", *argv]) == code
    assert says in capsys.readouterr().err


def test_no_nats_server_is_exit_1(tmp_path, capsys):
    from appliance.sim.ports import free_port
    assert main(["audit", "--nats", f"nats://127.0.0.1:{free_port()}"]) == 1
    assert "appliance audit: nats://127.0.0.1:" in capsys.readouterr().err
