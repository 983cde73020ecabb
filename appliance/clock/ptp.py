"""linuxptp's view of the clock, through ``pmc`` on ptp4l's UNIX socket.

``pmc -u -b 0 -s SOCKET 'GET TIME_STATUS_NP' 'GET PORT_DATA_SET'`` answers with the master
offset, the ingress time of the last sync and the port state. A lost grandmaster does not show
in ``gmPresent`` (it stays true) nor in ``master_offset`` (it freezes): only ``portState``
leaving SLAVE and ``ingress_time`` dropping to 0 show it (measured here; see DESIGN.md).
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass

QUERY = ("GET TIME_STATUS_NP", "GET PORT_DATA_SET")


@dataclass(frozen=True)
class PtpStatus:
    port_state: str                 # SLAVE, UNCALIBRATED, LISTENING, MASTER, FAULTY, ... ("" if unknown)
    master_offset_ns: int | None
    ingress_time_ns: int            # 0: no sync received (the grandmaster is gone)
    gm_present: bool
    gm_identity: str


class PtpQueryError(RuntimeError):
    """pmc could not be run, timed out, or ptp4l did not answer."""


def parse_pmc_output(text: str) -> PtpStatus:
    """The fields the guard needs from pmc's answer; missing answers raise PtpQueryError."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("master_offset", "ingress_time", "gmPresent", "gmIdentity",
                                            "portState"):
            fields[parts[0]] = parts[1]
    if "portState" not in fields or "ingress_time" not in fields:
        raise PtpQueryError("ptp4l did not answer TIME_STATUS_NP and PORT_DATA_SET (is it running on that socket?)")
    try:
        offset = int(fields["master_offset"]) if "master_offset" in fields else None
        ingress = int(fields["ingress_time"])
    except ValueError as exc:
        raise PtpQueryError(f"unexpected pmc output: {exc}") from None
    return PtpStatus(port_state=fields["portState"], master_offset_ns=offset, ingress_time_ns=ingress,
                     gm_present=fields.get("gmPresent") == "true", gm_identity=fields.get("gmIdentity", ""))


def query_ptp4l(uds: str, *, pmc: str = "pmc", timeout_s: float = 2.0) -> PtpStatus:
    """Ask ptp4l (through pmc on ``uds``) for its time status and port state."""
    command = [pmc, "-u", "-b", "0", "-s", uds, *QUERY]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise PtpQueryError(f"{pmc!r} not found (install linuxptp)") from None
    except subprocess.TimeoutExpired:
        raise PtpQueryError(f"pmc on {uds} did not answer within {timeout_s:g} s") from None
    return parse_pmc_output(result.stdout)
