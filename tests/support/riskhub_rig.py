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
