"""Operations: the operator's tools beside the trading path: read-only views of a running appliance
(shmtop, the Prometheus exporter), preflight, and the ITCH day-file reader (``appliance itch``)."""
