"""A real ``nats-server -js`` for tests (``appliance.sim.nats_server.NatsServer``), gone afterwards.

``nats_server_binary()`` is the binary, or a skip with the reason when it is absent, except under
``CI=true`` where .ci/run installs it: there a missing binary fails the test.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.sim import nats_server as _server


def nats_server_binary() -> str:
    path = _server.find_nats_server()
    if path:
        return path
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("nats-server is not installed: .ci/run installs the Debian package nats-server under CI")
    pytest.skip("nats-server is not installed (apt-get install nats-server): the drop copy's tests need a real one")


class NatsServer(_server.NatsServer):
    """The server, its absence a skip (or a failure under CI)."""

    def __init__(self, store_dir: Path, port: int | None = None):
        super().__init__(store_dir, port, nats_server_binary())


class NatsCluster(_server.NatsCluster):
    """Three nodes on loopback, their absence a skip (or a failure under CI)."""

    def __init__(self, store_dir: Path, size: int = 3):
        super().__init__(store_dir, size, nats_server_binary())


@pytest.fixture
def nats_cluster(tmp_path):
    cluster = NatsCluster(tmp_path / "nats-cluster")
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def nats_server(tmp_path):
    server = NatsServer(tmp_path / "nats")
    try:
        yield server.start()
    finally:
        server.stop()
