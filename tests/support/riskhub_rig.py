"""The risk hub's test rig: a hub configuration file, a RiskHub on its own thread and event loop,
a supervisor's control socket that records what it is asked, and raw NATS publishing."""
from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import yaml

from appliance.dropcopy.config import parse_dropcopy_params
from appliance.riskhub.config import load_hub_config
from appliance.riskhub.hub import RiskHub
from conftest import wait_until
from dropcopy_rig import JournalWriter, Running


def write_hub_config(path, url: str, **sections) -> str:
    """A hub file for ``url`` (``sections`` over the defaults: limits, on_breach, heartbeat_ms ...)."""
    document = {"version": 1, "name": "firm", "nats": {"url": url}, "heartbeat_ms": 100}
    document.update(sections)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


class RunningHub:
    """A RiskHub on its own thread and event loop, stopped and joined on every path."""

    def __init__(self, config_path: str):
        self.hub = RiskHub(load_hub_config(config_path))
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.hub._stopping is not None, 10, message="the hub's loop")

    def _run(self):
        try:
            asyncio.run(self.hub.run())
        except BaseException as exc:   # noqa: BLE001 - reported by stop()
            self.error = exc

    def caught_up(self, timeout: float = 30) -> "RunningHub":
        wait_until(lambda: self.hub.caught_up, timeout, message="the hub catching up with the stream")
        return self

    def position(self, symbol: str) -> int | None:
        """The firm's position in ``symbol`` as the hub's last figures say (None: not there, as in
        a book being rebuilt): the figures the hub's thread replaces whole, never its book mid-change."""
        return (self.hub.figures["symbols"].get(symbol) or {}).get("position")

    def stop(self):
        self.hub.stop()
        self.thread.join(20)
        assert not self.thread.is_alive(), "the hub did not stop"
        assert self.error is None, repr(self.error)


class RecordingSupervisor:
    """The supervisor's control server (its real socket code) answering ok to every request and
    keeping them, polled on a thread."""

    def __init__(self, path: str):
        from appliance.supervisor.control_server import ControlServer
        self.requests: list[dict] = []
        self.server = ControlServer(path, self._handle)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _handle(self, request: dict, _caller) -> dict:
        self.requests.append(request)
        return {"ok": True}

    def _poll(self):
        while not self._stop.is_set():
            if not self.server.poll():
                self._stop.wait(0.002)

    def close(self):
        self._stop.set()
        self.thread.join(10)
        self.server.close()


def publish_raw(url: str, messages: list[tuple[str, bytes]], stream: str | None = None) -> None:
    """Publish ``(subject, bytes)`` as they are (garbage included); into the stream when named."""
    async def send():
        import nats
        nc = await nats.connect(url, connect_timeout=5)
        try:
            js = nc.jetstream() if stream else None
            for subject, data in messages:
                if js is not None:
                    await js.publish(subject, data, stream=stream)
                else:
                    await nc.publish(subject, data)
            await nc.flush(5)
        finally:
            await nc.close()
    asyncio.run(send())


D = 10_000            # one dollar in price units


def dropcopy_config(server, journal_path, appliance, **params):
    layout = SimpleNamespace(path=str(journal_path), name=appliance, processes={})
    return parse_dropcopy_params({"nats": {"url": server.url}, "journal": str(journal_path), "appliance": appliance,
                                  **params}, layout)     # params' nats (a cluster's) over the server's


class Firm:
    """Two appliances' journals and drop copies (firm commands to one recording supervisor)."""

    def __init__(self, server, tmp_path, marks=None, **params):
        self.supervisor = RecordingSupervisor(str(tmp_path / "ctl" / "supervisor.sock"))
        self.journals, self.copies = {}, {}
        try:
            for name in ("venue1", "venue2"):
                self.journals[name] = JournalWriter(str(tmp_path / f"{name}.bin"))
                config = dropcopy_config(server, tmp_path / f"{name}.bin", name, **params)
                self.copies[name] = Running(config, control_socket=self.supervisor.server.path,
                                            marks=(marks or {}).get(name))
        except BaseException:
            self.close()
            raise

    def published(self, name: str) -> int:
        return self.copies[name].copy.stats.last_sequence

    def close(self):
        for running in self.copies.values():
            running.stop()
        for journal in self.journals.values():
            journal.close()
        self.supervisor.close()


def ask_hub(config_path: str, command: str, **fields) -> dict:
    """One request to the hub named in ``config_path`` (status, kill, reduce, activate), as
    ``appliance risk-hub`` sends it: the hub's answer (``status``, or the ``command`` it sent)."""
    import json

    from appliance.dropcopy.publisher import connect_nats
    config = load_hub_config(config_path)

    async def ask():
        nc = await connect_nats(config, "risk-hub-test")
        try:
            reply = await nc.request(config.control_subject, json.dumps({"command": command, **fields}).encode(),
                                     timeout=10)
            return json.loads(reply.data)
        finally:
            await nc.close()
    answer = asyncio.run(ask())
    assert answer.get("ok"), answer
    return answer


class HubProcess:
    """``appliance risk-hub --config`` as a process of its own (SIGKILLed like a crashed hub, started
    again), its output in ``log``; ``close`` leaves nothing running."""

    def __init__(self, config_path: str, log_path):
        self.config_path, self.log_path = config_path, log_path
        self.proc = None

    def start(self) -> "HubProcess":
        import subprocess
        import sys

        from appliance.sim.exchange_process import appliance_env
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "appliance", "risk-hub", "--config", self.config_path],
                                         stdout=log, stderr=subprocess.STDOUT, env=appliance_env())
        return self

    def status(self) -> dict | None:
        """The hub's status once it has caught up with the stream (None before, or while it cannot answer)."""
        try:
            status = ask_hub(self.config_path, "status")["status"]
        except Exception:        # not answering yet (no responders, timeout)
            return None
        return status if status["caught_up"] else None

    def caught_up(self, timeout: float = 60) -> dict:
        return wait_until(self.status, timeout, interval=0.2, message="the hub process catching up with the stream")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                pass
        self.kill()
