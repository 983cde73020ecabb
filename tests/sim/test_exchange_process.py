"""The one launcher of the simulated exchange (``appliance.sim.exchange_process``): ready line,
early exit, a slow start, a restart appending to the same log, and nothing left running."""
from __future__ import annotations

import pytest
import yaml

from appliance.sim.exchange_process import ExchangeProcess, parse_ready_line
from exchange_process import base_config


def test_the_ready_line_gives_every_port_and_keeps_other_words():
    ports = parse_ready_line("exchange ready order_entry=127.0.0.1:4000 rerequest=127.0.0.1:4001 session=TEST000001")
    assert ports == {"order_entry": ("127.0.0.1", 4000), "rerequest": ("127.0.0.1", 4001), "session": "TEST000001"}


def _config(tmp_path, name: str = "exchange.yaml") -> str:
    doc = base_config(control={"socket": str(tmp_path / "ctl" / "x.sock")},
                      records={"directory": str(tmp_path / "records")})
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_an_exchange_that_is_not_ready_in_time_is_reported_and_killed(tmp_path):
    exchange = ExchangeProcess(["--config", _config(tmp_path)])
    try:
        with pytest.raises(RuntimeError, match="did not report ready within 0 s"):
            exchange.wait_ready(0)            # no Python process is up before its first poll
    finally:
        exchange.close()
    assert exchange.proc.poll() is not None


def test_an_exchange_that_exits_early_is_reported_with_its_output(tmp_path):
    with ExchangeProcess(["--config", str(tmp_path / "missing.yaml")]) as exchange:
        with pytest.raises(RuntimeError, match=r"exited 2 before it was ready:\n.*missing.yaml"):
            exchange.wait_ready(30)


def test_a_restart_appends_to_the_log_and_waits_for_its_own_ready_line(tmp_path):
    """The sandbox and ``up --sim`` log to a file a restarted exchange writes on: the first run's
    ready line must not count for the second (which here never gets ready)."""
    log = tmp_path / "exchange.log"
    first = ExchangeProcess(["--config", _config(tmp_path), "--linger", "0"], log_path=log)
    try:
        ports = first.wait_ready(30)
        assert isinstance(ports["order_entry"], tuple) and ports["order_entry"][1] > 0
        assert first.stop(30) == 0
    finally:
        first.close()
    assert "exchange ready " in log.read_text()
    with ExchangeProcess(["--config", str(tmp_path / "missing.yaml")], log_path=log) as second:
        with pytest.raises(RuntimeError, match="exited 2 before it was ready"):
            second.wait_ready(30)
        assert "exchange ready" not in second.output() and "missing.yaml" in second.output()
    assert "exchange ready " in log.read_text()           # appended, not truncated


def test_a_pinned_exchange_runs_on_its_cpu_below_the_appliances_priority(tmp_path):
    """The small profile's simulator_cpu: the exchange's background flow must be off the critical path
    (seen at nice 0 beside the strategy, risk and OMS it shares that CPU with)."""
    import os
    from appliance.sim.exchange_process import SIMULATOR_NICE
    cpu = min(os.sched_getaffinity(0))
    with ExchangeProcess(["--config", _config(tmp_path)]) as exchange:
        assert exchange.pin(cpu)
        assert os.sched_getaffinity(exchange.proc.pid) == {cpu}
        assert os.getpriority(os.PRIO_PROCESS, exchange.proc.pid) == max(SIMULATOR_NICE, os.getpriority(os.PRIO_PROCESS, 0))
        exchange.wait_ready(60)
