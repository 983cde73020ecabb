"""The simulated exchange's configuration as the exchange uses it: frozen dataclasses, one per section.

Built only by ``config_check.build_config`` (from a file through ``config.load_config``, or from
``ExchangeConfig.with_overrides``), so every instance has passed the checks; ``to_dict`` is the
document form that ``config.parse_config`` reads back to an equal config.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import yaml

from appliance.config.errors import ConfigFileError

CONFIG_VERSION = 1


class ConfigError(ConfigFileError):
    """An exchange configuration that cannot be used: names the file, key path, line and reason."""


@dataclass(frozen=True)
class SymbolConfig:
    """One listed instrument; its locate is its position in ``ExchangeConfig.symbols`` + 1."""

    symbol: str
    reference_price: int
    round_lot: int = 100


@dataclass(frozen=True)
class FirmConfig:
    """A participant allowed to log in to order entry."""

    username: str
    password: str
    mpid: str
    cancel_on_disconnect: bool = False   # cancel the firm's open orders when its session is lost


@dataclass(frozen=True)
class OrderEntryConfig:
    host: str
    port: int
    heartbeat_interval_ms: int
    peer_timeout_ms: int


@dataclass(frozen=True)
class MulticastConfig:
    group: str
    port: int
    interface: str
    ttl: int


@dataclass(frozen=True)
class MarketDataConfig:
    session: str
    source_host: str
    source_port: int
    subscribers: tuple[tuple[str, int], ...]
    multicast: MulticastConfig | None
    rerequest_host: str
    rerequest_port: int
    max_payload: int
    heartbeat_interval_ms: int
    snapshot_host: str = "127.0.0.1"      # the GLIMPSE snapshot server (appliance.exchange.glimpse)
    snapshot_port: int = 15004


@dataclass(frozen=True)
class FaultConfig:
    drop: float
    duplicate: float
    reorder: float
    seed: int


@dataclass(frozen=True)
class BackgroundConfig:
    enabled: bool
    rate: float
    seed: int
    firm: str
    tick: int
    volatility_bp: float
    max_resting_per_symbol: int


@dataclass(frozen=True)
class RecordsConfig:
    directory: str | None


@dataclass(frozen=True)
class ControlConfig:
    socket: str | None


_SECTIONS = ("order_entry", "market_data", "faults", "background", "records", "control")


@dataclass(frozen=True)
class ExchangeConfig:
    symbols: tuple[SymbolConfig, ...]
    max_shares: int
    order_entry: OrderEntryConfig
    firms: tuple[FirmConfig, ...]
    market_data: MarketDataConfig
    faults: FaultConfig
    background: BackgroundConfig
    records: RecordsConfig
    control: ControlConfig
    duration_s: float | None

    def with_overrides(self, **changes) -> ExchangeConfig:
        """A copy with fields replaced, validated like a file (a ConfigError names the bad key).

        A field takes its new value (``duration_s=5``, ``records=RecordsConfig("/tmp/r")``); a
        section may also take a dict of the fields to change (``order_entry={"port": 0}``).
        """
        fields = {f.name for f in dataclasses.fields(self)}
        replaced: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in fields:
                raise ConfigError("<overrides>", name, f"unknown field (allowed: {', '.join(sorted(fields))})")
            if name in _SECTIONS and isinstance(value, dict):
                section = getattr(self, name)
                known = {f.name for f in dataclasses.fields(section)}
                for key in value:
                    if key not in known:
                        raise ConfigError("<overrides>", f"{name}.{key}",
                                          f"unknown field (allowed: {', '.join(sorted(known))})")
                value = dataclasses.replace(section, **value)
            replaced[name] = value
        candidate = dataclasses.replace(self, **replaced)
        from .config_check import build_config      # the checker builds this model: imported when used
        return build_config(candidate.to_dict(), "<overrides>", None)

    def replace_section(self, name: str, **fields) -> ExchangeConfig:
        """``with_overrides`` of one section: ``config.replace_section("faults", drop=0.1)``."""
        if name not in _SECTIONS:
            raise ConfigError("<overrides>", name, f"not a section (sections: {', '.join(_SECTIONS)})")
        return self.with_overrides(**{name: fields})

    def to_dict(self) -> dict[str, Any]:
        """The document form (what ``parse_config`` reads back to an equal config)."""
        md = self.market_data
        return {
            "version": CONFIG_VERSION,
            "symbols": [dataclasses.asdict(s) for s in self.symbols],
            "limits": {"max_shares": self.max_shares},
            "order_entry": dataclasses.asdict(self.order_entry),
            "firms": [dataclasses.asdict(f) for f in self.firms],
            "market_data": {
                "session": md.session,
                "source_host": md.source_host,
                "source_port": md.source_port,
                "subscribers": [f"{host}:{port}" for host, port in md.subscribers],
                "multicast": dataclasses.asdict(md.multicast) if md.multicast is not None else None,
                "rerequest_host": md.rerequest_host,
                "rerequest_port": md.rerequest_port,
                "max_payload": md.max_payload,
                "heartbeat_interval_ms": md.heartbeat_interval_ms,
                "snapshot_host": md.snapshot_host,
                "snapshot_port": md.snapshot_port,
            },
            "faults": dataclasses.asdict(self.faults),
            "background": dataclasses.asdict(self.background),
            "records": dataclasses.asdict(self.records),
            "control": dataclasses.asdict(self.control),
            "duration_s": self.duration_s,
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)
