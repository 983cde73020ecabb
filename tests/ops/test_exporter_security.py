"""Remote metrics only on purpose: the exporter refuses an address that is not loopback without TLS
and basic auth, and with them answers 401 without credentials and the metrics with them (over
loopback, TLS forced by configuring it)."""
from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from appliance.ops.exporter_security import Exposure, ExposureError, check_exposure, is_loopback
from appliance.supervisor.config import SupervisorConfigError, parse_supervisor_params
from conftest import ROOT, wait_until

PASSWORD = "scrape-Secr3t"


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "localhost"])
def test_loopback_needs_nothing(address):
    assert is_loopback(address)
    check_exposure(Exposure(address))


@pytest.mark.parametrize("exposure,missing", [
    (Exposure("0.0.0.0"), "needs tls: {cert, key} and basic_auth: {user, password_file}"),
    (Exposure("10.1.2.3", tls_cert="c.pem", tls_key="k.pem"), "needs basic_auth: {user, password_file}"),
    (Exposure("metrics.example", auth_user="prom", auth_password_file="pw"), "needs tls: {cert, key}"),
    (Exposure("127.0.0.1", tls_cert="c.pem"), "tls needs both cert and key"),
    (Exposure("127.0.0.1", auth_user="prom"), "basic_auth needs both user and password_file"),
    (Exposure("127.0.0.1", auth_user="a:b", auth_password_file="pw"), "without ':'"),
])
def test_what_is_missing_is_said(exposure, missing):
    with pytest.raises(ExposureError, match=re.escape(missing)):
        check_exposure(exposure)


def test_the_supervisor_refuses_a_remote_exporter_without_tls_and_auth_at_start():
    with pytest.raises(SupervisorConfigError) as raised:
        parse_supervisor_params({"exporter": {"address": "0.0.0.0"}}, ["oms"])
    assert raised.value.key_path == "processes.supervisor.params.exporter" and "not loopback" in raised.value.reason
    config = parse_supervisor_params({"exporter": {"address": "0.0.0.0", "port": 9100,
                                                   "tls": {"cert": "c.pem", "key": "k.pem"},
                                                   "basic_auth": {"user": "prom", "password_file": "pw"}}}, ["oms"])
    assert config.exporter.argv() == ["--address", "0.0.0.0", "--port", "9100", "--tls-cert", "c.pem", "--tls-key",
                                      "k.pem", "--basic-auth-user", "prom", "--basic-auth-password-file", "pw"]
    parse_supervisor_params({"exporter": {"enabled": False, "address": "0.0.0.0"}}, ["oms"])    # not started
    with pytest.raises(SupervisorConfigError, match="unknown key"):
        parse_supervisor_params({"exporter": {"tls": {"cert": "c", "key": "k", "ca": "x"}}}, ["oms"])


def _exporter(tmp_path, *args):
    layout = tmp_path / "layout.yaml"
    if not layout.exists():
        layout.write_text((ROOT / "shm_layout.yaml").read_text().replace("name: appliance", f"name: xs{os.getpid()}"))
    log = open(tmp_path / "exporter.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "exporter", "--layout", str(layout), *args],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    return proc, log


def _stop(proc, log):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    log.close()


def _refused(tmp_path, *args) -> str:
    """Start the exporter with ``args``; it must refuse (exit 2). Its log."""
    proc, log = _exporter(tmp_path, *args)
    try:
        assert proc.wait(30) == 2
    finally:
        _stop(proc, log)
    return (tmp_path / "exporter.log").read_text()


def test_the_exporter_refuses_to_listen_beyond_loopback_without_tls_and_auth(tmp_path):
    text = _refused(tmp_path, "--address", "0.0.0.0", "--port", "0")
    assert "refusing to start" in text and "not loopback" in text and "tls" in text and "basic_auth" in text
    assert "serving metrics" not in text


@pytest.fixture
def tls_files(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=120)
    os.chmod(key, 0o600)
    password = tmp_path / "scrape.password"
    password.write_text(PASSWORD + "\n")
    os.chmod(password, 0o600)
    return cert, key, password


def test_with_tls_and_basic_auth_a_scrape_needs_the_password(tmp_path, tls_files):
    cert, key, password = tls_files
    proc, log = _exporter(tmp_path, "--address", "127.0.0.1", "--port", "0", "--tls-cert", str(cert), "--tls-key",
                          str(key), "--basic-auth-user", "prom", "--basic-auth-password-file", str(password))
    try:
        def bound_port():
            assert proc.poll() is None, (tmp_path / "exporter.log").read_text()
            match = re.search(r"https://127\.0\.0\.1:(\d+)/metrics \(basic auth as prom\)",
                              (tmp_path / "exporter.log").read_text())
            return int(match.group(1)) if match else None
        port = wait_until(bound_port, 30, 0.05, "exporter listening")
        url = f"https://127.0.0.1:{port}/metrics"
        context = ssl.create_default_context(cafile=str(cert))

        def get(authorization: str | None):
            request = urllib.request.Request(url)
            if authorization:
                request.add_header("Authorization", authorization)
            try:
                with urllib.request.urlopen(request, timeout=20, context=context) as response:
                    return response.status, response.read().decode(), response.headers
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode(), exc.headers

        def basic(user, word):
            return "Basic " + base64.b64encode(f"{user}:{word}".encode()).decode()
        silent = socket.create_connection(("127.0.0.1", port))       # holds only its own thread
        try:
            status, _, headers = get(None)
            assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="appliance"'
            assert get(basic("prom", "wrong"))[0] == 401
            assert get(basic("someone", PASSWORD))[0] == 401
            status, body, _ = get(basic("prom", PASSWORD))
            assert status == 200 and "appliance_up 0.0" in body
        finally:
            silent.close()
        with pytest.raises(Exception):                             # plain HTTP on the TLS port gets nothing
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=20).read()
        assert get(basic("prom", PASSWORD))[0] == 200             # and the server keeps serving
    finally:
        _stop(proc, log)
    assert PASSWORD not in (tmp_path / "exporter.log").read_text()


def test_a_readable_key_or_password_file_is_refused(tmp_path, tls_files):
    cert, key, password = tls_files
    os.chmod(password, 0o644)
    secured = ("--port", "0", "--tls-cert", str(cert), "--tls-key", str(key), "--basic-auth-user", "prom",
               "--basic-auth-password-file", str(password))
    text = _refused(tmp_path, "--address", "0.0.0.0", *secured)
    assert "basic_auth password file" in text and "chmod 600" in text and PASSWORD not in text
    os.chmod(password, 0o600)
    os.chmod(key, 0o640)
    assert "TLS key" in _refused(tmp_path, "--address", "127.0.0.1", *secured)
