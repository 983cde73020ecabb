"""The drop copy: every OMS journal record published to NATS JetStream, off the critical path."""
