"""The supervisor: creates the segments, starts and watches every process, owns the trading gate, guards the clock."""
