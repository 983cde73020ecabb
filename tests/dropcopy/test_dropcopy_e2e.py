"""End to end: ``appliance up`` against the simulated exchange with the drop copy on and a real
nats-server. The stream ends up holding the real OMS journal, record for record, as ``appliance
audit`` reads it, across a NATS outage in the middle of the session during which the appliance
kept trading with its gate open."""
from __future__ import annotations

import json

import pytest

from appliance.oms.audit import AuditTrail
from appliance.oms.journal_format import read_records
from appliance.sim.sandbox import Sandbox
from conftest import wait_until
from dropcopy_rig import stream_messages
from nats_server import nats_server   # noqa: F401  (the fixture)

pytestmark = pytest.mark.e2e


def test_the_stream_holds_the_oms_journal_across_a_nats_outage(nats_server, tmp_path):
    sb = Sandbox(tmp_path / "sb", params={"dropcopy": {"nats": {"url": nats_server.url}, "appliance": "venue1",
                                                       "retry": {"initial_ms": 50, "max_ms": 500}}})
    try:
        sb.start()
        fills = lambda: sb.status()["totals"]["fills"]     # noqa: E731
        wait_until(lambda: fills() >= 2, 120, interval=0.2, message="fills")
        wait_until(lambda: sb.counters().get("dropcopy.connected") == 1
                   and sb.counters().get("dropcopy.last_sequence", 0) > 0, 60, message="the drop copy publishing")
        nats_server.kill()
        wait_until(lambda: sb.counters()["dropcopy.connected"] == 0, 30, message="the drop copy seeing NATS gone")
        before = fills()
        wait_until(lambda: fills() >= before + 2, 120, interval=0.2, message="trading on while NATS is down")
        # the lag is measured every 100 ms and copied to the counters every 50 ms: waited for, not read at once
        wait_until(lambda: sb.counters()["dropcopy.lag_records"] > 0, 10, message="the lag counting the backlog")
        assert sb.control()["gate_open"] == 1, sb.status()["gate"]
        nats_server.start()
        wait_until(lambda: sb.counters()["dropcopy.connected"] == 1, 60, message="the drop copy back")
        assert sb.down() == 0, sb.up_output()[-3000:]
    finally:
        sb.close()
    records, _, header = read_records(str(sb.journal))
    rows = list(AuditTrail().rows(records))
    messages = stream_messages(nats_server)
    assert [m[1] for m in messages] == [f"venue1:{header['trading_day']}:{r.sequence}" for r in records]
    for (_subject, _id, event), row in zip(messages, rows):
        assert event.pop("appliance") == "venue1" and event.pop("trading_day") == header["trading_day"]
        assert event == json.loads(json.dumps(row)), row["sequence"]
    assert {"SENT_NEW", "ACCEPTED", "EXECUTED", "GATE_CHANGED", "LOGOUT"} <= {m[2]["event"] for m in messages}
