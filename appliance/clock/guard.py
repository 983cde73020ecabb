"""The clock guard: is CLOCK_REALTIME disciplined well enough to stamp orders with?

Two sources, from config:
- ``kernel``: adjtimex (read-only). Healthy when STA_UNSYNC is clear and the kernel's
  maxerror is within the limit.
- ``ptp``: linuxptp through pmc. Healthy when the port is SLAVE (UNCALIBRATED only with the
  explicit ``accept_uncalibrated`` test flag), the last sync's ingress time is recent, and
  |master offset| is within the limit.
The limit defaults to MiFID II RTS 25 for HFT: 100 us divergence from UTC.

``require_sync: false`` (the documented simulated setup, where the kernel clock reports
unsynchronised) makes the guard report NOT_REQUIRED: the gate does not wait for the clock.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from appliance.messages.codes import ClockState
from appliance.config.checker import Checker
from appliance.config.errors import ParamsError

from .kernel import read_kernel_clock
from .ptp import PtpQueryError, query_ptp4l

RTS25_HFT_MAX_DIVERGENCE_NS = 100_000


class ClockConfigError(ParamsError):
    """A bad value in the clock settings: key path and reason."""


@dataclass(frozen=True)
class ClockConfig:
    require_sync: bool = True
    source: str = "kernel"                      # kernel | ptp
    max_offset_ns: int = RTS25_HFT_MAX_DIVERGENCE_NS
    check_interval_ms: int = 500
    ptp_uds: str = "/var/run/ptp4l"
    pmc: str = "pmc"
    max_ingress_age_ms: int = 2000
    accept_uncalibrated: bool = False           # tests only: a free-running slave never leaves UNCALIBRATED


@dataclass(frozen=True)
class ClockVerdict:
    state: ClockState
    reason: str                                 # why, in words ("" when healthy)
    offset_ns: int = 0
    maxerror_ns: int = 0
    checked_ns: int = field(default_factory=time.time_ns)

    @property
    def blocks_trading(self) -> bool:
        return self.state not in (ClockState.HEALTHY, ClockState.NOT_REQUIRED)


def parse_clock_config(section: dict | None, path: str = "clock") -> ClockConfig:
    s = Checker.for_params(ClockConfigError).section(
        section, path, None, {"require_sync": bool, "source": str, "max_offset_ns": int, "check_interval_ms": int,
                              "ptp": dict}, optional=True)
    ptp = s.section("ptp", {"uds": str, "pmc": str, "max_ingress_age_ms": int, "accept_uncalibrated": bool})
    defaults = ClockConfig()
    return ClockConfig(require_sync=s.boolean("require_sync", defaults.require_sync),
                       source=s.choice("source", ("kernel", "ptp"), defaults.source),
                       max_offset_ns=s.integer("max_offset_ns", 1, 10**10, defaults.max_offset_ns),
                       check_interval_ms=s.integer("check_interval_ms", 10, 60_000, defaults.check_interval_ms),
                       ptp_uds=ptp.string("uds", defaults.ptp_uds, empty=True),
                       pmc=ptp.string("pmc", defaults.pmc, empty=True),
                       max_ingress_age_ms=ptp.integer("max_ingress_age_ms", 1, 600_000, defaults.max_ingress_age_ms),
                       accept_uncalibrated=ptp.boolean("accept_uncalibrated", defaults.accept_uncalibrated))


class ClockGuard:
    """Judges the clock on demand (``check``); no state beyond the last verdict."""

    def __init__(self, config: ClockConfig, *, read_kernel=read_kernel_clock, query_ptp=query_ptp4l):
        self.config = config
        self._read_kernel = read_kernel
        self._query_ptp = query_ptp
        self.last: ClockVerdict | None = None

    def check(self) -> ClockVerdict:
        cfg = self.config
        if not cfg.require_sync:
            verdict = ClockVerdict(ClockState.NOT_REQUIRED, "clock.require_sync is false (simulated setup)")
        elif cfg.source == "ptp":
            verdict = self._check_ptp()
        else:
            verdict = self._check_kernel()
        self.last = verdict
        return verdict

    def _check_kernel(self) -> ClockVerdict:
        try:
            k = self._read_kernel()
        except OSError as exc:
            return ClockVerdict(ClockState.UNHEALTHY, f"adjtimex failed: {exc}")
        maxerror_ns = k.maxerror_us * 1000
        if k.unsynchronised:
            return ClockVerdict(ClockState.UNHEALTHY, "kernel clock unsynchronised (STA_UNSYNC)",
                                maxerror_ns=maxerror_ns)
        if maxerror_ns > self.config.max_offset_ns:
            return ClockVerdict(ClockState.UNHEALTHY, f"kernel maxerror {k.maxerror_us} us over the "
                                f"{self.config.max_offset_ns // 1000} us limit", maxerror_ns=maxerror_ns)
        return ClockVerdict(ClockState.HEALTHY, "", offset_ns=k.offset, maxerror_ns=maxerror_ns)

    def _check_ptp(self) -> ClockVerdict:
        cfg = self.config
        try:
            s = self._query_ptp(cfg.ptp_uds, pmc=cfg.pmc)
        except PtpQueryError as exc:
            return ClockVerdict(ClockState.UNHEALTHY, f"ptp: {exc}")
        offset = s.master_offset_ns or 0
        good_states = ("SLAVE", "UNCALIBRATED") if cfg.accept_uncalibrated else ("SLAVE",)
        if s.port_state not in good_states:
            return ClockVerdict(ClockState.UNHEALTHY, f"ptp port state {s.port_state or 'unknown'} (not SLAVE)",
                                offset_ns=offset)
        if s.ingress_time_ns == 0:
            return ClockVerdict(ClockState.UNHEALTHY, "ptp: no sync received (ingress_time 0)", offset_ns=offset)
        age_ns = time.time_ns() - s.ingress_time_ns
        if abs(age_ns) > cfg.max_ingress_age_ms * 1_000_000:
            return ClockVerdict(ClockState.UNHEALTHY, f"ptp: last sync {age_ns / 1e9:.1f} s ago", offset_ns=offset)
        if s.master_offset_ns is None or abs(offset) > cfg.max_offset_ns:
            return ClockVerdict(ClockState.UNHEALTHY, f"ptp master offset {offset} ns over the "
                                f"{cfg.max_offset_ns} ns limit", offset_ns=offset)
        return ClockVerdict(ClockState.HEALTHY, "", offset_ns=offset)
