"""systemd/nats-server.conf, the recipe for the firm's NATS cluster (README "Scaling out"): nats-server
takes it as it is, and three nodes made from it (only addresses, names and the store changed, as an
operator changes them per box) form a JetStream cluster that holds the drop copies' stream with 3
replicas and keeps serving it with a node gone."""
from __future__ import annotations

import asyncio
import re
import socket
import subprocess

from appliance.dropcopy.publisher import STREAM_SUBJECTS
from appliance.sim.nats_server import NatsServer
from appliance.sim.ports import free_port
from conftest import ROOT, wait_until
from nats_server import nats_server_binary

RECIPE = ROOT / "systemd" / "nats-server.conf"


def node_file(tmp_path, index: int, ports: list[int], routes: list[int]):
    """The recipe for node ``index`` on loopback: what an operator edits, nothing else."""
    text = RECIPE.read_text()
    text = text.replace("server_name: nats-1", f"server_name: nats-{index + 1}")
    text = text.replace("0.0.0.0:4222", f"127.0.0.1:{ports[index]}").replace("0.0.0.0:6222", f"127.0.0.1:{routes[index]}")
    text = text.replace("/var/lib/nats", str(tmp_path / f"node{index}" / "js"))
    text, count = re.subn(r"nats-route://nats-(\d)\.example:6222",
                          lambda m: f"nats-route://127.0.0.1:{routes[int(m.group(1)) - 1]}", text)
    assert count == 3, "the recipe's three routes"
    path = tmp_path / f"node{index}.conf"
    path.write_text(text)
    return path


def test_nats_server_takes_the_recipe_as_it_is():
    checked = subprocess.run([nats_server_binary(), "-t", "-c", str(RECIPE)], capture_output=True, text=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "jetstream" in RECIPE.read_text() and "routes" in RECIPE.read_text()


def test_three_nodes_of_the_recipe_hold_the_stream_with_three_replicas(tmp_path):
    binary = nats_server_binary()
    ports = [free_port(socket.SOCK_STREAM) for _ in range(3)]
    routes = [free_port(socket.SOCK_STREAM) for _ in range(3)]
    nodes = [NatsServer(tmp_path / f"node{i}", ports[i], binary, config_file=node_file(tmp_path, i, ports, routes))
             for i in range(3)]
    servers = [node.url for node in nodes]

    async def stream(create: bool):
        import nats
        nc = await nats.connect(servers=servers, connect_timeout=2, allow_reconnect=False)
        try:
            js = nc.jetstream(timeout=5)
            if create:
                await js.add_stream(name="APPLIANCE_EVENTS", subjects=list(STREAM_SUBJECTS), num_replicas=3)
            await js.publish("appliance.venue1.events", b"{}", headers={"Nats-Msg-Id": f"venue1:1:{1 if create else 2}"})
            info = await js.stream_info("APPLIANCE_EVENTS")
            return info.config.num_replicas, 1 + len(info.cluster.replicas or []), info.state.messages
        finally:
            await nc.close()

    def attempt(create: bool):
        try:
            return asyncio.run(stream(create))
        except Exception:           # the cluster still electing its JetStream leader: asked again
            return None
    try:
        for node in nodes:
            node.launch()
        for node in nodes:
            node.wait_ready()
        assert wait_until(lambda: attempt(True), 60, interval=0.5, message="the cluster's R3 stream") == (3, 3, 1)
        nodes[0].kill()
        replicas, _peers, messages = wait_until(lambda: attempt(False), 60, interval=0.5,
                                                message="the stream served by the other two")
        assert (replicas, messages) == (3, 2)
    finally:
        for node in nodes:
            node.stop()
