"""The drop copy's settings: the ``params`` of the ``dropcopy`` process in ``shm_layout.yaml``.

    params:
      nats:
        url: ""                  # "" or absent: the drop copy is off; a cluster: its nodes' URLs, comma-separated
        stream: APPLIANCE_EVENTS # created (file storage) when missing; subjects appliance.*.events
        credentials: ""          # a NATS .creds file (JWT + nkey seed), mode 0600; relative: to the layout
        tls: {ca: "", cert: "", key: ""}   # tls://, or a server asking for TLS; cert+key: client certificate
        duplicate_window_s: 600  # the stream's de-duplication window (when the drop copy creates it)
        replicas: 1              # the stream's replicas when the drop copy creates it (3 in a 3-node cluster)
      appliance: ""              # the name in subjects and message ids (default: the layout's name)
      journal: ""                # the OMS journal (default: the oms process's params.journal)
      batch: 256                 # events read and published at a time; at most 4 batches await acknowledgements
      retry: {initial_ms: 200, max_ms: 5000}   # reconnect backoff while NATS is unreachable
      firm:                      # the firm-wide risk hub (appliance/riskhub/)
        commands: false          # apply its firm.commands (KILL, REDUCE, ACTIVATE) and watch its heartbeat
        heartbeat_timeout_ms: 5000   # no heartbeat this long: on_silence
        on_silence: reduce       # reduce | kill | none
        marks_ms: 1000           # the market-state table's marks published this often (0: never)

A NATS server that is not on loopback must be reached with TLS (``tls://`` or ``tls.ca``) and
credentials: the stream is the firm's record and its subjects are its trust boundary.
"""
from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from dataclasses import dataclass

from appliance.config.checker import Checker
from appliance.config.errors import ParamsError

SUBJECT_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class DropCopyConfigError(ParamsError):
    """A bad value in the drop copy's settings: key path and reason."""


@dataclass(frozen=True)
class DropCopyConfig:
    url: str = ""
    stream: str = "APPLIANCE_EVENTS"
    credentials: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    duplicate_window_s: int = 600
    replicas: int = 1                    # of the stream, when the drop copy creates it (3 in a cluster)
    appliance: str = ""
    journal: str = ""
    batch: int = 256
    retry_initial_ms: int = 200
    retry_max_ms: int = 5000
    firm_commands: bool = False          # apply the risk hub's firm.commands and watch its heartbeat
    hub_timeout_ms: int = 5000           # the hub silent this long: on_hub_silence
    on_hub_silence: str = "reduce"       # reduce | kill | none
    marks_ms: int = 1000                 # marks published on appliance.<name>.marks this often (0: never)

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    @property
    def marks_subject(self) -> str:
        """``appliance.<name>.marks``: this appliance's marks (a plain publish the stream keeps:
        the risk hub rebuilds its marked P&L and peak from them)."""
        return f"appliance.{self.appliance}.marks"

    @property
    def subject(self) -> str:
        """``appliance.<name>.events``: where this appliance's events go."""
        return f"appliance.{self.appliance}.events"

    def message_id(self, trading_day: int, sequence: int) -> str:
        """The JetStream de-duplication id of one journal record. The journal numbers its records
        from 1 each trading day, so the day is part of the id: two days never share one."""
        return f"{self.appliance}:{trading_day}:{sequence}"


_KEYS = {"nats": (dict, None), "appliance": str, "journal": str, "batch": int, "retry": dict, "firm": dict}
ON_SILENCE = ("reduce", "kill", "none")
_NATS_KEYS = {"url": (str, None), "stream": str, "credentials": str, "tls": dict, "duplicate_window_s": int,
              "replicas": int}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_dropcopy_params(params: dict | None, layout, path: str = "processes.dropcopy.params") -> DropCopyConfig:
    """The checked settings; paths resolved against the layout's directory; the journal and the
    appliance name default to the OMS's journal and the layout's name."""
    top = Checker.for_params(DropCopyConfigError).section(params, path, None, _KEYS, optional=True)
    base = os.path.dirname(os.path.abspath(layout.path)) if getattr(layout, "path", "") else os.getcwd()
    nats = top.section("nats", _NATS_KEYS)
    connection = read_nats_section(nats, base)
    retry = top.section("retry", {"initial_ms": int, "max_ms": int})
    firm = top.section("firm", {"commands": bool, "heartbeat_timeout_ms": int, "on_silence": str,
                                "marks_ms": int})
    appliance = top.string("appliance", "", empty=True) or layout.name
    if not SUBJECT_TOKEN.fullmatch(appliance):
        where = "appliance" if "appliance" in top else "(the layout's name)"
        top.checker.fail(top.key_path("appliance"), f"{appliance!r} {where} must be 1..64 letters, digits, "
                                                     "'_' or '-' (it is a NATS subject token)")
    journal = top.string("journal", "", empty=True) or _oms_journal(layout)
    config = DropCopyConfig(
        **connection,
        duplicate_window_s=nats.integer("duplicate_window_s", 1, 86_400, DropCopyConfig.duplicate_window_s),
        replicas=nats.integer("replicas", 1, 5, DropCopyConfig.replicas),
        appliance=appliance, journal=os.path.normpath(journal if os.path.isabs(journal) else os.path.join(base, journal)),
        batch=top.integer("batch", 1, 65_536, DropCopyConfig.batch),
        retry_initial_ms=retry.integer("initial_ms", 1, 600_000, DropCopyConfig.retry_initial_ms),
        retry_max_ms=retry.integer("max_ms", 1, 600_000, DropCopyConfig.retry_max_ms),
        firm_commands=firm.boolean("commands", DropCopyConfig.firm_commands),
        hub_timeout_ms=firm.integer("heartbeat_timeout_ms", 100, 3_600_000, DropCopyConfig.hub_timeout_ms),
        on_hub_silence=firm.choice("on_silence", ON_SILENCE, DropCopyConfig.on_hub_silence),
        marks_ms=firm.integer("marks_ms", 0, 3_600_000, DropCopyConfig.marks_ms))
    if config.retry_max_ms < config.retry_initial_ms:
        retry.fail("max_ms", f"must be at least initial_ms ({config.retry_initial_ms}), got {config.retry_max_ms}")
    return config


def read_nats_section(nats, base: str) -> dict:
    """url, stream, credentials and tls_* of a ``nats`` section (the drop copy's params, the risk
    hub's file): checked one way for both, paths resolved against ``base``; a server off loopback
    only with TLS and credentials. ``url`` may name the nodes of a cluster, comma-separated (the
    client fails over between them)."""
    def resolved(name: str) -> str:
        return os.path.normpath(name if os.path.isabs(name) else os.path.join(base, name)) if name else ""
    url = nats.string("url", "", nullable=True, empty=True) or ""
    tls = nats.section("tls", {"ca": str, "cert": str, "key": str})
    settings = dict(url=url, stream=nats.string("stream", DropCopyConfig.stream, pattern=STREAM_NAME,
                                                rule="1..64 letters, digits, '_' or '-'"),
                    credentials=resolved(nats.string("credentials", "", empty=True)),
                    tls_ca=resolved(tls.string("ca", "", empty=True)), tls_cert=resolved(tls.string("cert", "", empty=True)),
                    tls_key=resolved(tls.string("key", "", empty=True)))
    if bool(settings["tls_cert"]) != bool(settings["tls_key"]):
        tls.fail("cert" if not settings["tls_cert"] else "key", "a client certificate needs both cert and key")
    for one in url.split(",") if url else ():
        _check_url(nats, one.strip(), settings["tls_ca"], settings["credentials"])
    settings["url"] = ",".join(one.strip() for one in url.split(",")) if url else ""
    return settings


def _check_url(nats, url: str, tls_ca: str, credentials: str) -> None:
    """nats:// or tls://host:port; off loopback only with TLS and credentials (fail closed)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("nats", "tls") or not parsed.hostname:
        nats.fail("url", f"{url[:80]!r} must be nats://HOST:PORT or tls://HOST:PORT")
    try:
        parsed.port
    except ValueError:
        nats.fail("url", f"{url[:80]!r} has a bad port")
    if parsed.username or parsed.password:
        nats.fail("url", "no user or password in the URL (it is logged): use nats.credentials")
    if not _loopback(parsed.hostname):
        if parsed.scheme != "tls" and not tls_ca:
            nats.fail("url", f"{parsed.hostname} is not loopback: use tls:// (and nats.tls.ca) so the "
                             "events and credentials do not cross the network in clear")
        if not credentials:
            nats.fail("credentials", f"{parsed.hostname} is not loopback: it needs its own "
                                     "credentials (a .creds file with only the subjects it uses)")


MAX_CREDENTIALS_BYTES = 16384


def read_credentials(config: DropCopyConfig) -> str:
    """The NATS credentials file's text, read only when it is private to this user (mode 0600,
    ours, a regular file: ``runtime.private_file``); PrivateFileError naming it otherwise."""
    from appliance.runtime.private_file import read_private_file
    return read_private_file(config.credentials, "NATS credentials file", max_bytes=MAX_CREDENTIALS_BYTES,
                             check_mode=not config.credentials.startswith(_systemd_credentials())).decode(
                                 "utf-8", "replace")


def check_secret_files(config: DropCopyConfig, path: str = "processes.dropcopy.params") -> None:
    """The credentials file and the TLS client key readable and private, before anything starts."""
    from appliance.runtime.private_file import PrivateFileError, read_private_file
    try:
        if config.credentials:
            read_credentials(config)
    except PrivateFileError as exc:
        raise DropCopyConfigError(f"{path}.nats.credentials", str(exc)) from None
    try:
        if config.tls_key:
            read_private_file(config.tls_key, "NATS TLS client key", max_bytes=65536)
    except PrivateFileError as exc:
        raise DropCopyConfigError(f"{path}.nats.tls.key", str(exc)) from None


def _systemd_credentials() -> str:
    """systemd's LoadCredential= directory (a private mount whose files may show group bits)."""
    directory = os.environ.get("CREDENTIALS_DIRECTORY", "")
    return os.path.join(directory, "") if directory else "\0"


def _oms_journal(layout) -> str:
    """The journal the layout's OMS writes (its params.journal, else the OMS's default)."""
    from appliance.oms.config import OmsConfig
    processes = getattr(layout, "processes", {})
    for process in processes.values():
        if process.agent.startswith("appliance.oms."):
            journal = (process.params or {}).get("journal", OmsConfig.journal)
            return journal if isinstance(journal, str) else OmsConfig.journal
    return OmsConfig.journal
