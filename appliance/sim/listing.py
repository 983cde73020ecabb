"""What the simulated exchange lists: the appliance's instruments, so the venue trades what the layout does.

``listing_from(config, instruments_file)`` is the exchange's configuration with its ``symbols`` replaced
by the instruments file the layout names (symbol, round lot, reference price), converted and checked
by the exchange's own rules (``instruments:`` in its config), so `up --sim` and the sandbox never list
one set of symbols while the appliance trades another.
"""
from __future__ import annotations

import os

from appliance.exchange.config_check import build_config
from appliance.exchange.config_model import ExchangeConfig


def listing_from(config: ExchangeConfig, instruments_file: str | os.PathLike | None) -> ExchangeConfig:
    """``config`` listing exactly the instruments of ``instruments_file`` (None: ``config`` as it is);
    a ConfigError (key ``instruments``) says why the exchange cannot list them."""
    if instruments_file is None:
        return config
    document = config.to_dict()
    del document["symbols"]
    document["instruments"] = os.path.abspath(os.fspath(instruments_file))
    return build_config(document, "<the layout's instruments>", None)
