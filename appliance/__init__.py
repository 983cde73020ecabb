"""A multi-process low-latency trading appliance.

Processes (feed, strategy, risk, oms) pass fixed-size records through SPSC rings
in shared memory described by ``shm_layout.yaml``; see ``appliance.runtime``.
"""

__version__ = "0.1.0"
