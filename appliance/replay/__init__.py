"""The venue model of a recorded ITCH day, shared by the backtest (``appliance backtest``) and the simulated
exchange's replay (``appliance exchange --replay``): the recorded book per symbol with our orders in its
queues (``venue.py``), the queue-position models (``queue.py``) and the latency model (``latency.py``).

A leaf: it imports only ``appliance.wire`` and ``appliance.config``, so the exchange may use it.
"""
