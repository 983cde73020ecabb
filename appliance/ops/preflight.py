"""``appliance preflight``: is this machine ready to run the layout as a low-latency appliance?

Checks, for the processes and segments a layout declares: the CPUs exist; those
of the hot processes (every pinned process but one that sleeps between duty
cycles, like the supervisor) are isolated (``isolcpus``), the kernel keeps its
tick and RCU callbacks off them (``nohz_full``, ``rcu_nocbs``) and interrupts
are steered away from them; huge pages are reserved for the segments that ask
for them, the kernel clock is disciplined (adjtimex), the memlock limit allows
``mlockall`` where asked, SCHED_FIFO is permitted where asked, and the CPU
frequency governor is ``performance``; every process's params and the files they name are usable
(the OMS's venue credentials file: present, mode 0600, well formed). Prints one line per check with what is missing and how to fix
it; exits 1 when anything required is missing. systemd/README.md explains each
fix. Run it as the service user (limits are per process: under systemd the
unit's ``LimitMEMLOCK=`` counts, which is why the supervisor unit runs it as
its ``ExecStartPre``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from dataclasses import asdict, dataclass

from appliance.command_io.arguments import bounded

DEFAULT_LAYOUT = "shm_layout.yaml"
OK, MISSING, WARN = "ok", "MISSING", "warn"
EVERY_CPU = frozenset(range(4096))        # "every CPU the layout names is here": its own placement


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


def parse_cpu_mask(text: str) -> set[int]:
    """'ff,ffffffff' -> CPUs 0..39 (the kernel's hex mask, 32-bit words, most significant first)."""
    digits = text.strip().replace(",", "")
    if not digits:
        return set()
    value = int(digits, 16)
    return {cpu for cpu in range(value.bit_length()) if value >> cpu & 1}


def kernel_parameters(cmdline: str) -> dict[str, str]:
    """``/proc/cmdline`` as name -> value (flags map to "")."""
    params = {}
    for word in cmdline.split():
        name, _, value = word.partition("=")
        params[name] = value
    return params


def _cpus_of_parameter(value: str) -> set[int]:
    """nohz_full= / rcu_nocbs= / isolcpus= values: a cpulist, isolcpus possibly with flags first
    ("managed_irq,domain,2-5")."""
    parts = [p for p in value.split(",") if p and not p[0].isalpha()]
    try:
        return parse_cpu_list(",".join(parts))
    except ValueError:
        return set()


def irq_cpus(pinned: set[int]) -> tuple[set[int], dict[str, set[int]]]:
    """(pinned CPUs new interrupts may land on, {irq: pinned CPUs it may run on})."""
    default = parse_cpu_mask(_read("/proc/irq/default_smp_affinity") or "") & pinned
    per_irq = {}
    try:
        irqs = [name for name in os.listdir("/proc/irq") if name.isdigit()]
    except OSError:
        irqs = []
    for irq in irqs:
        text = _read(f"/proc/irq/{irq}/smp_affinity_list")
        if text is None:
            continue
        try:
            on_pinned = parse_cpu_list(text) & pinned
        except ValueError:
            continue
        if on_pinned:
            per_irq[irq] = on_pinned
    return default, per_irq


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

    # A process that sleeps between duty cycles (the supervisor) shares a housekeeping CPU well;
    # every other pinned process wants its CPU to itself.
    hot = {p.name: p.cpu for p in layout.processes.values() if p.cpu is not None and p.idle.strategy != "sleep"}
    isolated = parse_cpu_list(_read("/sys/devices/system/cpu/isolated") or "")
    not_isolated = {name: cpu for name, cpu in hot.items() if cpu not in isolated}
    checks.append(Check("cpus isolated", MISSING if not_isolated else OK,
                        f"not isolated: {', '.join(f'{n}:{c}' for n, c in not_isolated.items())} (isolated: "
                        f"{sorted(isolated) or 'none'}); boot with isolcpus=, nohz_full= and rcu_nocbs= for them"
                        if not_isolated else (f"the hot processes' CPUs are isolated ({sorted(isolated)})" if hot
                                              else "no hot process is pinned")))

    pinned = set(hot.values()) & allowed
    absent_note = (WARN, f"the hot processes' CPUs {sorted(set(hot.values()))} are not on this machine") \
        if hot and not pinned else (OK, "no hot process is pinned")
    params = kernel_parameters(_read("/proc/cmdline") or "")
    lacking = {name: sorted(pinned - _cpus_of_parameter(params.get(name, ""))) for name in ("nohz_full", "rcu_nocbs")}
    lacking = {name: cpus for name, cpus in lacking.items() if cpus}
    cpu_text = ",".join(str(c) for c in sorted(pinned))
    if not pinned:
        checks.append(Check("kernel tick and rcu", *absent_note))
    else:
        checks.append(Check("kernel tick and rcu", MISSING if lacking else OK,
                            "; ".join(f"{name}= lacks CPUs {cpus}" for name, cpus in lacking.items()) +
                            f"; add nohz_full={cpu_text} rcu_nocbs={cpu_text} to the kernel command line"
                            if lacking else f"nohz_full and rcu_nocbs cover CPUs {sorted(pinned)}"))

    default_irq, irqs_on_pinned = irq_cpus(pinned)
    if default_irq or irqs_on_pinned:
        listed = ", ".join(f"{irq}:{sorted(cpus)}" for irq, cpus in sorted(irqs_on_pinned.items(),
                                                                           key=lambda kv: int(kv[0]))[:8])
        more = f" (+{len(irqs_on_pinned) - 8} more)" if len(irqs_on_pinned) > 8 else ""
        checks.append(Check("irq affinity", MISSING,
                            (f"new IRQs may run on pinned CPUs {sorted(default_irq)}; " if default_irq else "") +
                            (f"{len(irqs_on_pinned)} IRQs may run on pinned CPUs ({listed}{more}); "
                             if irqs_on_pinned else "") +
                            "steer them to the housekeeping CPUs (IRQBALANCE_BANNED_CPULIST, "
                            "/proc/irq/*/smp_affinity_list, /proc/irq/default_smp_affinity)"))
    elif not pinned:
        checks.append(Check("irq affinity", *absent_note))
    else:
        checks.append(Check("irq affinity", OK, f"no IRQ may run on pinned CPUs {sorted(pinned)}"))

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
    checks.append(_config_check(layout))
    return checks


def _config_check(layout) -> Check:
    """Every process's params and the files they name (the OMS's venue credentials: present,
    private, well formed), as ``appliance up`` checks them before it starts anything."""
    from appliance.runtime.layout import LayoutError
    from appliance.supervisor.preflight_config import check_process_configs
    try:
        check_process_configs(layout)
    except (LayoutError, ImportError, ValueError, OSError) as exc:
        return Check("process configs", MISSING, str(exc))
    return Check("process configs", OK, "every process's params, and the OMS's venue credentials file")


def run(args: argparse.Namespace) -> int:
    from appliance.runtime.layout import LayoutError, load_layout

    try:
        # the placement the layout asks for with every CPU it names present (the production box's),
        # and the one this machine would run (profile auto picks the small profile when CPUs lack)
        layout = load_layout(args.layout, available_cpus=EVERY_CPU)
        here = load_layout(args.layout)
    except LayoutError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 1
    checks = run_checks(layout, args.max_clock_error_us)
    if here.profile != layout.profile:
        checks.insert(1, Check("profile", WARN, f"this machine would run the {here.profile} profile, not the "
                                                f"{layout.profile} placement checked here"))
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
