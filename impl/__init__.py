"""Reference implementation over ZeroMQ."""
