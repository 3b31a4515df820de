"""A real OpenAI-compatible HTTP server on 127.0.0.1 with scripted replies and injected faults."""
