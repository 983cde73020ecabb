"""The firm-wide risk hub: every appliance's drop copy summed, firm limits, firm commands over NATS."""
