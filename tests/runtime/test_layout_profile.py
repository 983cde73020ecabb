"""Layout profiles: ``auto`` picks ``small`` (with a warning) when a pinned CPU is missing, an
explicit ``profile`` wins, the small profile's idle specs, and every bad profile key refused."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import yaml

from appliance.runtime.layout import SPINNING_IDLE, LayoutError, load_layout
from conftest import layout_document

ROOT = Path(__file__).resolve().parents[2]
TWO_CPUS, EIGHT_CPUS = {0, 1}, set(range(8))


def repository(write_layout, profile: str | None = None, cpus=TWO_CPUS):
    doc = yaml.safe_load((ROOT / "shm_layout.yaml").read_text())
    if profile is not None:
        doc["profile"] = profile
    return load_layout(write_layout(doc), available_cpus=cpus)


def small_doc(**small) -> dict:
    doc = layout_document(
        "tprof",
        processes=[{"name": "prod", "agent": "m.a:P", "cpu": 4, "idle": {"strategy": "busy_spin"}},
                   {"name": "cons", "agent": "m.a:C", "cpu": 5, "idle": {"strategy": "busy_spin"}}],
        rings=[{"name": "probe", "segment": "main", "producer": "prod", "consumer": "cons", "message": "Probe",
                "slot_size": 64, "capacity": 1024}])
    doc["profiles"] = {"small": {"simulator_cpu": 0,
                                 "processes": {"prod": {"cpu": 1, "idle": {"strategy": "yield"}},
                                               "cons": {"cpu": None, "idle": {"strategy": "doorbell", "spins": 5,
                                                                              "park_timeout_ns": 3_000_000}}},
                                 **small}}
    return doc


def test_fewer_cpus_than_the_layout_pins_selects_the_small_profile_with_a_warning(write_layout):
    layout = repository(write_layout)
    assert layout.profile == "small"
    assert any("running the small profile" in w and "2 CPUs" in w for w in layout.warnings)
    assert not any("will run unpinned" in w for w in layout.warnings)   # the small placement replaced them


def test_a_machine_with_the_cpus_runs_the_production_placement_silently(write_layout):
    layout = repository(write_layout, cpus=EIGHT_CPUS)
    assert layout.profile == "full" and layout.warnings == [] and layout.simulator_cpu is None
    assert layout.processes["strategy"].idle.strategy == "backoff" and layout.processes["strategy"].cpu == 3


def test_an_explicit_profile_wins_over_the_machine(write_layout):
    full = repository(write_layout, "full", TWO_CPUS)
    assert full.profile == "full" and full.processes["feed"].idle.strategy == "backoff"
    assert any("will run unpinned" in w for w in full.warnings)
    small = repository(write_layout, "small", EIGHT_CPUS)
    assert small.profile == "small" and small.processes["feed"].idle.strategy == "yield"
    assert not any("running the small profile" in w for w in small.warnings)   # asked for: no warning
    assert full.hash != small.hash        # a process that resolved otherwise refuses to attach


def test_the_small_profile_parks_every_ring_consumer_on_its_doorbell_and_has_one_spinner(write_layout):
    layout = repository(write_layout, "small", EIGHT_CPUS)
    processes = layout.processes
    consumers = {r.consumer for r in layout.rings.values()}
    assert consumers == {"strategy", "risk", "oms"}
    for name in consumers:
        idle = processes[name].idle
        assert idle.strategy == "doorbell" and 0 < idle.park_timeout_ns <= 10_000_000, name
    assert [p.name for p in processes.values() if p.idle.strategy in SPINNING_IDLE] == ["feed"]
    assert processes["supervisor"].idle.strategy == "sleep"
    assert layout.simulator_cpu is not None and layout.simulator_cpu != processes["feed"].cpu


def test_auto_without_a_small_profile_keeps_the_placement_and_warns_per_cpu(write_layout):
    doc = small_doc()
    del doc["profiles"]
    layout = load_layout(write_layout(doc), available_cpus=TWO_CPUS)
    assert layout.profile == "full" and sum("will run unpinned" in w for w in layout.warnings) == 2


def test_the_supervisor_logs_the_profile_warning(write_layout, caplog):
    """``appliance up`` logs the layout's warnings before anything starts (this layout then stops
    at its missing supervisor, exit 2): the small profile's choice is in the log."""
    import argparse
    from appliance.supervisor import up
    doc = small_doc()
    doc["processes"][0]["cpu"] = 999         # a CPU no machine here has
    path = write_layout(doc)
    with caplog.at_level(logging.WARNING, logger="appliance.supervisor"):
        code = up.run(argparse.Namespace(layout=str(path), duration=0.0, status_line="off"))
    assert code == up.EXIT_CONFIG
    assert any("running the small profile" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("change, where, reason", [
    (lambda d: d.update(profile="tiny"), "profile", "tiny"),
    (lambda d: d.update(profile=1), "profile", "string"),
    (lambda d: d["profiles"].update(big={}), "profiles.big", "unknown key"),
    (lambda d: d["profiles"]["small"].update(cpus=[1]), "profiles.small.cpus", "unknown key"),
    (lambda d: d["profiles"]["small"].update(simulator_cpu=-1), "profiles.small.simulator_cpu", "negative"),
    (lambda d: d["profiles"]["small"].update(simulator_cpu="0"), "profiles.small.simulator_cpu", "string"),
    (lambda d: d["profiles"]["small"]["processes"].update(nosuch={}), "profiles.small.processes.nosuch",
     "unknown key"),
    (lambda d: d["profiles"]["small"]["processes"]["cons"].update(nice=5), "profiles.small.processes.cons.nice",
     "unknown key"),
    (lambda d: d["profiles"]["small"]["processes"]["cons"].update(cpu="1"), "profiles.small.processes.cons.cpu",
     "string"),
    (lambda d: d["profiles"]["small"]["processes"]["cons"]["idle"].update(strategy="nap"),
     "profiles.small.processes.cons.idle.strategy", "nap"),
    (lambda d: d["profiles"]["small"]["processes"]["cons"]["idle"].update(park_timeout_ns=0),
     "profiles.small.processes.cons.idle.park_timeout_ns", "must be 1.."),
    (lambda d: d["profiles"]["small"]["processes"]["cons"].update(idle={"strategy": "busy_spin"}),
     "profiles.small.processes", "at most one spinner"),
    (lambda d: d.update(profile="small", profiles={}), "profile", "profiles.small"),
])
def test_bad_profile_keys_are_refused_with_their_path(write_layout, change, where, reason):
    doc = copy.deepcopy(small_doc())
    change(doc)
    with pytest.raises(LayoutError) as info:
        load_layout(write_layout(doc), available_cpus=TWO_CPUS)
    assert info.value.key_path == where and reason in info.value.reason, str(info.value)
