"""Operations: read-only views of a running appliance (shmtop; later the Prometheus exporter)."""
