"""`appliance preflight` on this machine: it reports what is missing and exits non-zero."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from appliance.clock.kernel import STA_UNSYNC, TIME_STATES, read_kernel_clock
from appliance.ops.preflight import _cpus_of_parameter, kernel_parameters, parse_cpu_list, parse_cpu_mask
from conftest import ROOT, layout_document


def preflight(*args):
    return subprocess.run([sys.executable, "-m", "appliance", "preflight", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def isolated_cpus() -> set[int]:
    with open("/sys/devices/system/cpu/isolated") as fh:
        return parse_cpu_list(fh.read())


def test_cpu_list_format():
    assert parse_cpu_list("") == set()
    assert parse_cpu_list("2-5,7") == {2, 3, 4, 5, 7}
    assert parse_cpu_list("0\n") == {0}


def test_kernel_clock_is_read_without_privilege():
    clock = read_kernel_clock()
    assert clock.state in TIME_STATES.values()
    assert clock.maxerror_us >= 0 and clock.unsynchronised == bool(clock.status & STA_UNSYNC)


def test_repository_layout_on_this_machine_reports_what_is_missing():
    proc = preflight("--json")
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    layout_cpus = {2, 3, 4, 5}
    if not layout_cpus <= isolated_cpus():
        assert checks["cpus isolated"]["status"] == "MISSING" and "isolcpus=" in checks["cpus isolated"]["detail"]
    if not layout_cpus <= os.sched_getaffinity(0):      # the production placement is checked, and what runs here said
        assert checks["cpus present"]["status"] == "MISSING"
        assert checks["profile"]["status"] == "warn" and "small profile" in checks["profile"]["detail"]
    for name in ("kernel tick and rcu", "irq affinity"):       # about the hot CPUs this machine has
        if not layout_cpus & os.sched_getaffinity(0):
            assert checks[name]["status"] == "warn" and "not on this machine" in checks[name]["detail"]
        else:
            assert checks[name]["status"] in ("ok", "MISSING")
    clock = read_kernel_clock()
    expected_clock = "MISSING" if clock.unsynchronised or clock.maxerror_us > 100 else "ok"
    assert checks["clock disciplined"]["status"] == expected_clock
    missing = [c for c in report["checks"] if c["status"] == "MISSING"]
    assert report["ready"] is (not missing)
    assert proc.returncode == (1 if missing else 0)
    text = preflight()
    assert text.returncode == proc.returncode
    assert ("not ready" in text.stdout) == bool(missing)


def test_scheduling_and_memlock_checks_follow_the_layout(write_layout, unique_name):
    doc = layout_document(unique_name, processes=[
        {"name": "hot", "agent": "m:A", "cpu": 0, "idle": {"strategy": "busy_spin"},
         "scheduling": {"policy": "fifo", "priority": 50, "mlockall": True}}], rings=[])
    proc = preflight("--layout", str(write_layout(doc)), "--json")
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert "hot want SCHED_FIFO up to 50" in checks["realtime scheduling"]["detail"]
    assert "hot call mlockall" in checks["memlock limit"]["detail"]
    if os.geteuid() == 0:
        assert checks["realtime scheduling"]["status"] == "ok" and checks["memlock limit"]["status"] == "ok"
    assert checks["hugepages"]["detail"] == "no segment asks for huge pages"


def test_bad_layout_is_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 0\n")
    proc = preflight("--layout", str(bad))
    assert proc.returncode == 1 and "preflight:" in proc.stderr and "Traceback" not in proc.stderr


def test_kernel_formats():
    assert parse_cpu_mask("3\n") == {0, 1}
    assert parse_cpu_mask("00000000,00000010") == {4}
    assert parse_cpu_mask("ff,00000000") == set(range(32, 40))
    params = kernel_parameters("quiet isolcpus=managed_irq,domain,2-5 nohz_full=2-5 rcu_nocbs=2,3\n")
    assert params["quiet"] == "" and params["nohz_full"] == "2-5"
    assert _cpus_of_parameter(params["isolcpus"]) == {2, 3, 4, 5}
    assert _cpus_of_parameter(params["rcu_nocbs"]) == {2, 3}
    assert _cpus_of_parameter("") == set()


def test_tick_rcu_and_irq_checks_on_this_machine(write_layout, unique_name):
    """A busy process pinned to CPU 0 (present everywhere): this box boots without nohz_full/rcu_nocbs
    and lets interrupts run anywhere, so both are reported with the fix; a process that sleeps
    between duty cycles (the supervisor's way) needs no isolated CPU."""
    doc = layout_document(unique_name, processes=[
        {"name": "hot", "agent": "m:A", "cpu": 0, "idle": {"strategy": "backoff"}},
        {"name": "sleeper", "agent": "m:B", "cpu": 0, "idle": {"strategy": "sleep"}}], rings=[])
    proc = preflight("--layout", str(write_layout(doc)), "--json")
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    with open("/proc/cmdline") as fh:
        params = kernel_parameters(fh.read())
    covered = all(0 in _cpus_of_parameter(params.get(name, "")) for name in ("nohz_full", "rcu_nocbs"))
    tick = checks["kernel tick and rcu"]
    assert tick["status"] == ("ok" if covered else "MISSING")
    if not covered:
        assert "nohz_full=0 rcu_nocbs=0" in tick["detail"]
    with open("/proc/irq/default_smp_affinity") as fh:
        default_on_0 = 0 in parse_cpu_mask(fh.read())
    irq = checks["irq affinity"]
    if default_on_0:
        assert irq["status"] == "MISSING" and "new IRQs may run on pinned CPUs [0]" in irq["detail"]
        assert "IRQBALANCE_BANNED_CPULIST" in irq["detail"]
    isolated = checks["cpus isolated"]
    if 0 not in isolated_cpus():
        assert "hot:0" in isolated["detail"] and "sleeper" not in isolated["detail"]
    assert proc.returncode == 1                     # CPU 0 is never isolated: always something missing


def test_venue_credentials_problems_are_reported_by_preflight(tmp_path):
    """The repository layout with its credentials file missing, then readable by others, then private."""
    layout = tmp_path / "shm_layout.yaml"
    layout.write_text((ROOT / "shm_layout.yaml").read_text().replace("name: appliance", "name: pfcreds"))

    def check():
        report = json.loads(preflight("--json", "--layout", str(layout)).stdout)
        return {c["name"]: c for c in report["checks"]}["process configs"]
    creds = tmp_path / "run" / "venue.credentials"
    missing = check()
    assert missing["status"] == "MISSING" and f"{creds} does not exist" in missing["detail"]
    creds.parent.mkdir()
    creds.write_text("username = ALGO1\npassword = pf-secret\n")
    os.chmod(creds, 0o644)
    readable = check()
    assert readable["status"] == "MISSING" and "mode 0644" in readable["detail"] and "pf-secret" not in str(readable)
    os.chmod(creds, 0o600)
    assert check()["status"] == "ok"
