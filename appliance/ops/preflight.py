"""``appliance preflight``: is this machine ready to run the layout as a low-latency appliance?

Checks, for the processes and segments a layout declares: the CPUs exist and
are isolated (``isolcpus``), huge pages are reserved for the segments that ask
for them, the kernel clock is disciplined (adjtimex), the memlock limit allows
``mlockall`` where asked, SCHED_FIFO is permitted where asked, and the CPU
frequency governor is ``performance``. Prints one line per check with what is
missing and how to fix it; exits 1 when anything required is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from dataclasses import asdict, dataclass

from appliance.cli import bounded

DEFAULT_LAYOUT = "shm_layout.yaml"
OK, MISSING, WARN = "ok", "MISSING", "warn"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", default=DEFAULT_LAYOUT, help=f"layout file (default {DEFAULT_LAYOUT})")
    parser.add_argument("--max-clock-error-us", type=bounded(int, 1, 10_000_000), default=100,
                        help="largest acceptable kernel maxerror in us (default 100: MiFID II RTS 25 for HFT)")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")


@dataclass
class Check:
    name: str
    status: str
    detail: str


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def parse_cpu_list(text: str) -> set[int]:
    """'2-5,7' -> {2, 3, 4, 5, 7} (the kernel's cpulist format)."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def _huge_pages() -> tuple[int, int]:
    """(free huge pages, huge page size in bytes) from /proc/meminfo."""
    free, size_kb = 0, 2048
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("HugePages_Free:"):
            free = int(line.split()[1])
        elif line.startswith("Hugepagesize:"):
            size_kb = int(line.split()[1])
    return free, size_kb * 1024


def run_checks(layout, max_clock_error_us: int) -> list[Check]:
    from appliance.clock.kernel import read_kernel_clock

    checks: list[Check] = []
    wanted = {p.name: p.cpu for p in layout.processes.values() if p.cpu is not None}
    allowed = os.sched_getaffinity(0)
    absent = {name: cpu for name, cpu in wanted.items() if cpu not in allowed}
    checks.append(Check("cpus present", MISSING if absent else OK,
                        "; ".join(f"{n} wants CPU {c}" for n, c in absent.items()) + f" (this machine: "
                        f"{sorted(allowed)})" if absent else f"CPUs {sorted(set(wanted.values()))} present"))

    isolated = parse_cpu_list(_read("/sys/devices/system/cpu/isolated") or "")
    not_isolated = {name: cpu for name, cpu in wanted.items() if cpu not in isolated}
    checks.append(Check("cpus isolated", MISSING if not_isolated else OK,
                        f"not isolated: {', '.join(f'{n}:{c}' for n, c in not_isolated.items())} (isolated: "
                        f"{sorted(isolated) or 'none'}); boot with isolcpus=, nohz_full= and rcu_nocbs= for them"
                        if not_isolated else f"all pinned CPUs isolated ({sorted(isolated)})"))

    free, page = _huge_pages()
    needed = sum(-(-s.size // page) for s in layout.segments.values() if s.backing == "hugepage")
    if needed:
        checks.append(Check("hugepages", OK if free >= needed else MISSING,
                            f"{free} free of {needed} needed ({page // 1024} KiB pages)" +
                            ("" if free >= needed else f"; reserve with sysctl vm.nr_hugepages={needed} "
                             f"(segments will fall back to 4 KiB pages)")))
    else:
        checks.append(Check("hugepages", OK, "no segment asks for huge pages"))

    try:
        clock = read_kernel_clock()
        synced = not clock.unsynchronised and clock.maxerror_us <= max_clock_error_us
        checks.append(Check("clock disciplined", OK if synced else MISSING,
                            f"adjtimex {clock.state}, STA_UNSYNC {'set' if clock.unsynchronised else 'clear'}, "
                            f"maxerror {clock.maxerror_us} us (limit {max_clock_error_us})" +
                            ("" if synced else "; run ptp4l + phc2sys (or chrony) so the kernel clock is disciplined")))
    except OSError as exc:
        checks.append(Check("clock disciplined", MISSING, f"cannot read adjtimex: {exc}"))

    lockers = [p.name for p in layout.processes.values() if p.scheduling.mlockall]
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if lockers:
        unlimited = soft == resource.RLIM_INFINITY or os.geteuid() == 0
        checks.append(Check("memlock limit", OK if unlimited else MISSING,
                            f"{', '.join(lockers)} call mlockall; RLIMIT_MEMLOCK "
                            f"{'unlimited' if soft == resource.RLIM_INFINITY else soft}" +
                            ("" if unlimited else "; set LimitMEMLOCK=infinity in the unit (ulimit -l unlimited)")))
    else:
        checks.append(Check("memlock limit", OK, "no process asks for mlockall"))

    fifo = [p.name for p in layout.processes.values() if p.scheduling.policy == "fifo"]
    if fifo:
        top = max(p.scheduling.priority for p in layout.processes.values() if p.scheduling.policy == "fifo")
        rtprio, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
        permitted = os.geteuid() == 0 or rtprio == resource.RLIM_INFINITY or rtprio >= top
        checks.append(Check("realtime scheduling", OK if permitted else MISSING,
                            f"{', '.join(fifo)} want SCHED_FIFO up to {top}; RLIMIT_RTPRIO {rtprio}" +
                            ("" if permitted else "; set LimitRTPRIO= or grant CAP_SYS_NICE")))
    else:
        checks.append(Check("realtime scheduling", OK, "no process asks for SCHED_FIFO"))

    governors = {cpu: _read(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor")
                 for cpu in sorted(set(wanted.values()))}
    unknown = [c for c, g in governors.items() if g is None]
    slow = {c: g for c, g in governors.items() if g is not None and g != "performance"}
    if slow:
        checks.append(Check("cpu governor", MISSING, f"{slow}; set scaling_governor=performance on these CPUs"))
    elif unknown:
        checks.append(Check("cpu governor", WARN, f"no cpufreq for CPUs {unknown} (a VM, or fixed frequency)"))
    else:
        checks.append(Check("cpu governor", OK, "performance"))
    return checks


def run(args: argparse.Namespace) -> int:
    from appliance.runtime.layout import LayoutError, load_layout

    try:
        layout = load_layout(args.layout)
    except LayoutError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 1
    checks = run_checks(layout, args.max_clock_error_us)
    missing = [c for c in checks if c.status == MISSING]
    if args.json:
        json.dump({"layout": args.layout, "ready": not missing, "checks": [asdict(c) for c in checks]}, sys.stdout,
                  indent=2)
        print()
    else:
        for check in checks:
            print(f"{check.status:<8} {check.name:<20} {check.detail}")
        print(f"\n{'ready' if not missing else f'not ready: {len(missing)} missing'} ({args.layout})")
    return 1 if missing else 0
