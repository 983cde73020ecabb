"""Internal message schemas: fixed-size little-endian records, each defined once."""
