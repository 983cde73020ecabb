"""``appliance exchange --replay DAYFILE`` as a process: the recorded day on MoldUDP64, OUCH orders
matched against it, the control socket in replay mode, the exit at the end of the day, bad arguments."""
from __future__ import annotations

from exchange_process import MoldConsumer, OrderClient, RunningExchange, base_config
from recorded_day import MS, OPEN_NS, P, quiet_day, write_day


def test_a_recorded_day_through_the_exchange_process(tmp_path):
    path = tmp_path / "day.bin"
    recorded = write_day(path, quiet_day(step_ns=500 * MS))     # 5.5 s of event time at speed 1
    config = base_config(order_entry={"peer_timeout_ms": 60_000})   # the client below sends no heartbeats
    with RunningExchange(config, extra_args=("--replay", str(path), "--replay-hold")) as exchange:
        consumer = MoldConsumer(exchange.feed, exchange.rerequest)
        client = OrderClient(exchange.order_entry, "ALGO1", "secret1")
        try:
            assert client.login["packet_type"] == "A"
            assert client.next_message()["event_code"] == "S"
            consumer.receive_until(3, 10)           # held: the preamble only (System Event, Stock Directory, 'Q')
            status = exchange.ctl("status")
            assert status["replay"]["started"] is False and status["feed"]["messages"] == 3
            assert "not available in replay" in exchange.ctl("halt", symbol="AAPL")["error"]
            client.enter("T1", "B", 100, "AAPL", P)      # held: at the preamble's time, before the recorded bid at P
            accepted = client.next_message()
            assert (accepted["type"], accepted["order_token"], accepted["timestamp"]) == ("A", "T1", OPEN_NS)
            assert exchange.ctl("start")["started"] is True
            executed = client.next_message(timeout=20)
            assert (executed["type"], executed["executed_shares"], executed["execution_price"],
                    executed["liquidity_flag"]) == ("E", 100, P, "A")
            assert executed["timestamp"] == OPEN_NS + 4 * 500 * MS   # the recorded execution at P that met it
            assert consumer.receive_until(len(recorded), 20) == recorded
            assert client.next_message(timeout=20)["event_code"] == "E"
            assert exchange.proc.wait(30) == 0                       # the exchange ends with the recorded day
            report = (exchange.records / "report.json").read_text()
            assert '"recorded_messages": 16' in report and '"fills": 1' in report
            assert (exchange.records / "itch.bin").read_bytes() == path.read_bytes()
        finally:
            client.close()
            consumer.close()


def usage_error(capsys, *args) -> str:
    """``appliance exchange ARGS`` refused before anything starts: its message (exit 2)."""
    from appliance.cli import main
    try:
        status = main(["exchange", *args])
    except SystemExit as exc:                  # argparse's own refusals
        status = exc.code
    assert status == 2
    return capsys.readouterr().err


def test_bad_replay_arguments_are_usage_errors(tmp_path, capsys):
    assert "cannot read" in usage_error(capsys, "--replay", str(tmp_path / "nope.bin"))
    path = tmp_path / "day.bin"
    write_day(path, quiet_day())
    assert "unknown queue model 'psychic'" in usage_error(capsys, "--replay", str(path), "--queue-model", "psychic")
    assert "is not max or a speed" in usage_error(capsys, "--replay", str(path), "--speed", "fast")
    assert "--speed needs --replay" in usage_error(capsys, "--speed", "max")
    assert "no background flow" in usage_error(capsys, "--replay", str(path), "--background-rate", "10")
