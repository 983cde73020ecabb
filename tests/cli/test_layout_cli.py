"""`appliance layout check|show`: what an operator runs before starting the appliance."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def run(*args):
    return subprocess.run([sys.executable, "-m", "appliance", "layout", *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_check_accepts_the_repository_layout():
    proc = run("check", "shm_layout.yaml")
    assert proc.returncode == 0 and "shm_layout.yaml: ok (version 1" in proc.stdout


def test_show_prints_offsets_of_every_ring():
    proc = run("show", "shm_layout.yaml")
    assert proc.returncode == 0
    for ring in ("book_updates", "order_intents", "approved_orders", "exec_to_strategy"):
        assert f"ring    {ring}" in proc.stdout
    assert "symbol  0   AAPL      tick 0.0100 round lot 100 band 0.0100..200000.0000 reference 190.0000  (" in proc.stdout
    assert "config/instruments.yaml:11)" in proc.stdout                 # where each instrument is defined


def test_check_reports_a_bad_file_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\nsegments: []\nrings: []\ntables: []\nprocesses: []\nextra: 1\n")
    proc = run("check", str(bad))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {bad}:7: extra: unknown key (allowed: instruments, name, peers, processes, profile, profiles, rings, " \
                                  f"segments, symbols, tables, version)"
    assert "Traceback" not in proc.stderr
