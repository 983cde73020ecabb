"""systemd/: every unit passes `systemd-analyze verify` with no output at all (it exits 0 on a
misspelled directive, printing a warning), the per-process CPUs agree with shm_layout.yaml, and
the units carry what the deployment guide promises (limits, restart policy, the owner user, the
workers bound to the supervisor)."""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.runtime.layout import load_layout
from conftest import ROOT

UNITS = ROOT / "systemd"
INSTALL_PREFIX = "/opt/appliance"          # where the units expect the checkout (systemd/README.md)
needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None and not os.environ.get("CI"),
                                           reason="systemd-analyze comes with Debian's systemd package")


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str                       # directive names are case-sensitive
    parser.read(path)
    return parser


def layout_processes() -> dict:
    """The processes as the production box places them (the units are for it: every CPU of the
    layout present), whatever this machine has: the small profile would re-place them here."""
    return load_layout(ROOT / "shm_layout.yaml", available_cpus=set(range(64))).processes


def agent_instances() -> list[str]:
    return [name for name in layout_processes() if name != "supervisor"]


def units_to_verify() -> list[str]:
    """Every unit file, templates as their instances (a template alone is not verifiable)."""
    names = []
    for path in sorted(UNITS.iterdir()):
        if path.suffix in (".service", ".target") and path.is_file():
            names += [f"appliance-agent@{i}.service" for i in agent_instances()] if path.name.endswith("@.service") \
                else [path.name]
    return names


def installed_copy(tmp_path: Path) -> Path:
    """The units as installed, the checkout's path for /opt/appliance: verify checks that each
    ExecStart binary exists, and this checkout's .venv is the one that does here."""
    target = tmp_path / "units"
    shutil.copytree(UNITS, target)
    for path in target.rglob("*"):
        if path.is_file() and path.suffix in (".service", ".target", ".conf"):
            path.write_text(path.read_text().replace(INSTALL_PREFIX, str(ROOT)))
    return target


def verify(directory: Path, name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{directory}:", "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run(["systemd-analyze", "verify", "--man=no", name], capture_output=True, text=True,
                          timeout=120, env=env, cwd=directory)


@needs_systemd_analyze
def test_every_unit_verifies_without_a_word(tmp_path):
    directory = installed_copy(tmp_path)
    assert (ROOT / ".venv" / "bin" / "appliance").exists()
    for name in units_to_verify():
        result = verify(directory, name)
        assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), \
            f"{name}:\n{result.stdout}{result.stderr}"


@needs_systemd_analyze
def test_a_misspelled_directive_is_caught(tmp_path):
    """The check above must fail on the warning alone: systemd-analyze still exits 0 here."""
    directory = installed_copy(tmp_path)
    service = directory / "appliance-supervisor.service"
    service.write_text(service.read_text().replace("LimitMEMLOCK=", "LimitMEMLOK="))
    result = verify(directory, "appliance-supervisor.service")
    assert "LimitMEMLOK" in result.stdout + result.stderr


def test_cpus_agree_with_the_layout():
    processes = layout_processes()
    supervisor = unit(UNITS / "appliance-supervisor.service")
    assert supervisor["Service"]["CPUAffinity"] == str(processes["supervisor"].cpu)
    for name in agent_instances():
        drop_in = UNITS / f"appliance-agent@{name}.service.d" / "cpu.conf"
        assert drop_in.exists(), f"no CPU drop-in for {name}"
        assert unit(drop_in)["Service"]["CPUAffinity"] == str(processes[name].cpu), name
    busy = {p.cpu for p in processes.values() if p.cpu is not None}
    exporter_cpu = int(unit(UNITS / "appliance-exporter.service")["Service"]["CPUAffinity"])
    assert exporter_cpu not in busy, "the exporter must stay off the appliance's CPUs"


def test_units_carry_limits_restart_policy_owner_and_binding():
    for name in ("appliance-supervisor.service", "appliance-agent@.service", "appliance-exporter.service"):
        service = unit(UNITS / name)["Service"]
        assert service["User"] == "appliance" and service["Group"] == "appliance", name
        assert service["Restart"] in ("on-failure", "always"), name
        assert service["CPUSchedulingPolicy"], name
    for name in ("appliance-supervisor.service", "appliance-agent@.service"):
        service = unit(UNITS / name)["Service"]
        assert service["LimitMEMLOCK"] == "infinity" and service["LimitRTPRIO"] == "99", name
    supervisor = unit(UNITS / "appliance-supervisor.service")
    assert supervisor["Service"]["KillMode"] == "mixed"          # SIGTERM to the supervisor: it stops in order
    assert supervisor["Unit"]["PartOf"] == "appliance.target"
    assert "appliance up" in supervisor["Service"]["ExecStart"]
    assert "appliance preflight" in supervisor["Service"]["ExecStartPre"]
    agent = unit(UNITS / "appliance-agent@.service")
    assert agent["Unit"]["BindsTo"] == "appliance-supervisor.service"   # a worker stops with the supervisor
    assert agent["Unit"]["After"] == "appliance-supervisor.service"     # the segments exist before it attaches
    assert agent["Service"]["CPUSchedulingPolicy"] == "fifo" and agent["Service"]["CPUSchedulingPriority"]
    assert "--process %i" in agent["Service"]["ExecStart"]
    target = unit(UNITS / "appliance.target")
    assert target["Unit"]["Requires"] == "appliance-supervisor.service"
    assert (UNITS / "README.md").exists()
