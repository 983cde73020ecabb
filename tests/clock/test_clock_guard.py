"""The clock guard: kernel and PTP verdicts, config errors, and the real ptp4l path in namespaces."""
from __future__ import annotations

import pytest

from appliance.clock.guard import ClockConfigError, ClockGuard, parse_clock_config
from appliance.clock.kernel import STA_UNSYNC, KernelClock
from appliance.clock.ptp import PtpQueryError, PtpStatus, parse_pmc_output
from appliance.messages.codes import ClockState
from conftest import wait_until

import ptp_lab


def kernel(status=0, maxerror_us=10):
    return lambda: KernelClock("TIME_OK", status, maxerror_us, 0, 0, 0)


def test_not_required_never_blocks():
    verdict = ClockGuard(parse_clock_config({"require_sync": False}), read_kernel=kernel(STA_UNSYNC)).check()
    assert verdict.state is ClockState.NOT_REQUIRED and not verdict.blocks_trading


def test_kernel_unsync_and_maxerror_over_the_rts25_limit_block():
    config = parse_clock_config({})
    assert config.max_offset_ns == 100_000 and config.require_sync
    assert ClockGuard(config, read_kernel=kernel(STA_UNSYNC)).check().reason.startswith("kernel clock unsynchronised")
    over = ClockGuard(config, read_kernel=kernel(0, 101)).check()
    assert over.blocks_trading and "101 us over the 100 us limit" in over.reason
    assert ClockGuard(config, read_kernel=kernel(0, 100)).check().state is ClockState.HEALTHY


def ptp(state="SLAVE", offset=50, ingress=None):
    import time
    ingress = time.time_ns() if ingress is None else ingress
    return lambda uds, pmc: PtpStatus(state, offset, ingress, True, "gm")


@pytest.mark.parametrize("status,healthy,reason", [
    (("SLAVE", 50, None), True, ""),
    (("SLAVE", 100_001, None), False, "master offset 100001 ns over"),
    (("SLAVE", -100_000, None), True, ""),
    (("LISTENING", 239, None), False, "port state LISTENING"),
    (("UNCALIBRATED", 5, None), False, "port state UNCALIBRATED"),
    (("SLAVE", 5, 0), False, "no sync received"),
    (("SLAVE", 5, 1), False, "last sync"),
])
def test_ptp_verdicts(status, healthy, reason):
    guard = ClockGuard(parse_clock_config({"source": "ptp"}), query_ptp=ptp(*status))
    verdict = guard.check()
    assert (verdict.state is ClockState.HEALTHY) == healthy and reason in verdict.reason


def test_pmc_failures_are_unhealthy_not_a_crash():
    def broken(uds, pmc):
        raise PtpQueryError("pmc on /nope did not answer")
    verdict = ClockGuard(parse_clock_config({"source": "ptp"}), query_ptp=broken).check()
    assert verdict.blocks_trading and "did not answer" in verdict.reason
    with pytest.raises(PtpQueryError):
        parse_pmc_output("sending: GET TIME_STATUS_NP\n")
    with pytest.raises(PtpQueryError):
        parse_pmc_output("portState SLAVE\ningress_time notanumber\n")


@pytest.mark.parametrize("section,key", [
    ({"bogus": 1}, "clock.bogus"), ({"require_sync": "yes"}, "clock.require_sync"),
    ({"source": "gps"}, "clock.source"), ({"max_offset_ns": 0}, "clock.max_offset_ns"),
    ({"ptp": {"uds": 5}}, "clock.ptp.uds"), ({"ptp": {"nope": 1}}, "clock.ptp.nope"),
])
def test_config_errors_name_the_key(section, key):
    with pytest.raises(ClockConfigError) as info:
        parse_clock_config(section)
    assert info.value.key_path == key


@pytest.mark.skipif(ptp_lab.available() is not None, reason=str(ptp_lab.available()))
def test_real_ptp4l_slave_is_healthy_until_the_master_stops():
    with ptp_lab.PtpLab() as lab:
        flagged = ClockGuard(parse_clock_config({"source": "ptp", "ptp": {
            "uds": lab.slave_uds, "accept_uncalibrated": True, "max_ingress_age_ms": 2000}}))
        strict = ClockGuard(parse_clock_config({"source": "ptp", "ptp": {"uds": lab.slave_uds}}))
        wait_until(lambda: flagged.check().state is ClockState.HEALTHY, 30,
                   message=f"the slave synced\n{lab.log('slave')}")
        assert "UNCALIBRATED" in strict.check().reason     # free_running: accepted only with the test flag
        lab.stop_master()
        wait_until(lambda: flagged.check().blocks_trading, 30, message="the guard noticed the lost master")
        assert any(word in flagged.last.reason for word in ("port state", "no sync", "last sync"))
