"""The engine: pure numpy / torch, no Qt. Everything long-running is a job (see jobs.py)."""
