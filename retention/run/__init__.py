"""The retention run: streaming, concurrent, rate-limited deletion with an audit log."""
