"""`appliance up --sim` gives the OMS the simulated firm's login in a 0600 file when none exists,
leaves an operator's file alone, and refuses a layout that still holds a password."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from appliance.oms.credentials import load_venue_credentials
from appliance.runtime.layout import LayoutError, load_layout
from appliance.supervisor.up import sim_credentials
from conftest import ROOT


def _layout(tmp_path, text: str | None = None):
    path = tmp_path / "shm_layout.yaml"
    path.write_text(text or (ROOT / "shm_layout.yaml").read_text().replace("name: appliance", f"name: simc{os.getpid()}"))
    return load_layout(path)


def test_up_sim_writes_the_simulated_firms_login_0600_once(tmp_path):
    layout = _layout(tmp_path)
    sim_credentials(layout, None)
    path = tmp_path / "run" / "venue.credentials"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    creds = load_venue_credentials(str(path))
    assert (creds.username, creds.password) == ("ALGO1", "secret1")     # the embedded default's firm ALGO
    path.write_text("username = MINE\npassword = mine\n")               # the operator's own: left alone
    sim_credentials(layout, None)
    assert load_venue_credentials(str(path)).username == "MINE"


def test_up_sim_needs_a_simulated_firm_with_the_oms_mpid(tmp_path):
    text = (ROOT / "shm_layout.yaml").read_text().replace("firm: ALGO\n", "firm: ZZZZ\n")
    with pytest.raises(LayoutError, match="no firm of the simulated exchange has MPID 'ZZZZ'"):
        sim_credentials(_layout(tmp_path, text), None)


def test_a_password_left_in_the_layout_stops_up_with_where_it_goes(tmp_path):
    text = (ROOT / "shm_layout.yaml").read_text().replace("      firm: ALGO\n", "      firm: ALGO\n      password: hunter2\n")
    path = tmp_path / "shm_layout.yaml"
    path.write_text(text)
    out = subprocess.run([sys.executable, "-m", "appliance", "up", "--sim", "--layout", str(path)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "processes.oms.params.password" in out.stderr and "credentials file" in out.stderr
    assert "hunter2" not in out.stderr + out.stdout
