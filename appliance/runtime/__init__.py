"""The runtime every process shares: layout, segments, SPSC rings, counters, agents.

- ``layout``   parse and validate ``shm_layout.yaml``; compute every offset and the layout hash
- ``segment``  create / attach / remove one shared-memory segment (huge pages, 4 KiB fallback)
- ``memory``   all segments of a layout, and the typed handles inside them
- ``channels`` the rings an agent declares (``RingUse``), checked against the layout; a ``Channel``
               is one side of a ring with its own segment's buffer and record
- ``_shm``     C11 atomics: ``Ring``, ``Doorbell``, ``Counter``, ``Heartbeat``, ``AtomicView``
- ``counters`` counters table (writer per process, reader for all) and the process table
- ``idle``     idle strategies: busy_spin, yield, backoff, sleep, doorbell
- ``agent``    ``Agent`` and ``AgentRunner``
"""
