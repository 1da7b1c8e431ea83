"""An app of commands that misbehave, installed only by tests/e2e/settings.py:
what the runtime isolates the server from."""
