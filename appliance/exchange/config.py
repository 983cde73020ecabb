"""``exchange.yaml``: what the simulated exchange lists, who may log in, and where it sends.

A wrong setting should stop the exchange before it opens a socket, and say where the mistake is.
``parse_config`` / ``load_config`` read a document through the one strict YAML loader
(``appliance.config.yaml_lines``: duplicate keys refused, the line of every key remembered) and
check it (``config_check.py``, on the one checker), returning a frozen ``ExchangeConfig``
(``config_model.py``); every problem is a ``ConfigError`` naming the file, the key path
(``symbols[2].reference_price``), the line and the reason. Omitted sections and keys take the
defaults of ``DEFAULT_CONFIG_YAML``, which is also what ``default_config()`` returns and what a
user copies to start their own file.

The exchange shares only the leaves ``appliance.wire`` and ``appliance.config`` with the appliance.
"""
from __future__ import annotations

import os

from appliance.config.yaml_lines import parse_yaml, read_yaml_file

from .config_check import build_config
from .config_model import ConfigError, ExchangeConfig

DEFAULT_CONFIG_YAML = """\
# The simulated exchange (`appliance exchange --config exchange.yaml`).
# Every section but `symbols` and `firms` is optional; an omitted key takes the value shown here.
version: 1

# The instruments, in locate order: the first is locate 1. Prices have 4 implied decimals
# (1900000 is $190.0000); the reference price seeds the background flow.
# Or, instead of this list, the appliance's instruments file (symbols, round lots and reference
# prices from there; a relative path is beside this file): instruments: config/instruments.yaml
symbols:
  - {symbol: AAPL, reference_price: 1900000, round_lot: 100}
  - {symbol: MSFT, reference_price: 4200000, round_lot: 100}
  - {symbol: SPY,  reference_price: 5600000, round_lot: 100}
  - {symbol: QQQ,  reference_price: 4800000, round_lot: 100}
  - {symbol: TSLA, reference_price: 2500000, round_lot: 100}

limits:
  max_shares: 1000000             # an order for more shares is rejected ('Z')

# OUCH 4.2 over SoupBinTCP 3.0.
order_entry:
  host: 127.0.0.1                 # an IPv4 address to listen on
  port: 15000                     # 0: any free port
  heartbeat_interval_ms: 1000
  peer_timeout_ms: 15000          # no message for this long ends the session; > heartbeat_interval_ms

# Who may log in. mpid (4 characters A-Z or 0-9) defaults to the username upper-cased, its first
# 4 characters padded with 'X'. Quote a password that YAML would read as a number.
# cancel_on_disconnect: when the firm's logged-in session ends other than by the end of the day
# (connection closed or reset, peer timeout, `ctl disconnect`, or its own Logout Request), every
# open order of the firm is canceled (OUCH Canceled reason 'Z', system cancel; ITCH 'D'), and its
# next login's replay says so. Off unless asked, as NASDAQ configures an OUCH port.
firms:
  - {username: ALGO1, password: secret1, mpid: ALGO, cancel_on_disconnect: false}
  - {username: ALGO2, password: secret2, mpid: ALG2, cancel_on_disconnect: false}

# ITCH 5.0 over MoldUDP64.
market_data:
  session: SIMEX00001             # 1..10 printable ASCII characters, no spaces
  source_host: 127.0.0.1          # the address packets are sent from
  source_port: 15003              # and the port: feeds accept only this source (0: any free port)
  subscribers: ["127.0.0.1:15001"]  # unicast destinations "host:port"; may be empty
  multicast: null                 # or {group: 239.1.1.1, port: 15001, interface: 127.0.0.1, ttl: 1}
  rerequest_host: 127.0.0.1       # the retransmission server
  rerequest_port: 15002           # 0: any free port
  snapshot_host: 127.0.0.1        # the GLIMPSE 5.0 snapshot server (SoupBinTCP; any login accepted)
  snapshot_port: 15004            # 0: any free port
  max_payload: 1400               # bytes of messages per packet after the 20-byte header
  heartbeat_interval_ms: 1000

# Damage done to the feed on purpose (probabilities per packet, 0..1).
faults:
  drop: 0.0
  duplicate: 0.0
  reorder: 0.0
  seed: 1

# Other participants: a random flow of orders around each reference price.
background:
  enabled: true
  rate: 2000                      # messages per second, 0..200000
  seed: 7
  firm: BGND                      # its username; must not be one of `firms`
  tick: 100                       # price increment (4 implied decimals: 100 is one cent)
  volatility_bp: 1.0              # random walk of the fair price, basis points per step
  max_resting_per_symbol: 200

records:
  directory: null                 # a directory for the day's records, or null for none

control:
  socket: null                    # a UNIX socket path for `appliance exchange ctl`, or null

duration_s: null                  # seconds to run, or null: until told to stop
"""



def parse_config(text: str | bytes, file: str = "<string>") -> ExchangeConfig:
    """Parse and validate one document; raises ConfigError on any problem."""
    return _checked(*parse_yaml(text, _errors(file), with_line=True), file)


def load_config(path: str | os.PathLike) -> ExchangeConfig:
    """Read and validate a file; a missing or unreadable file is a ConfigError too."""
    file = os.fspath(path)
    return _checked(*read_yaml_file(file, _errors(file), with_line=True), file)


def default_config() -> ExchangeConfig:
    """The embedded default (``DEFAULT_CONFIG_YAML``)."""
    return parse_config(DEFAULT_CONFIG_YAML, "<embedded default>")


def _errors(file: str):
    return lambda key_path, reason, line: ConfigError(file, key_path, reason, line)


def _checked(data, line: int | None, file: str) -> ExchangeConfig:
    if data is None:
        raise ConfigError(file, "", "empty document")
    return build_config(data, file, line)
