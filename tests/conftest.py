"""Shared pytest configuration."""

import os

# Rendering tests and pygame run headless everywhere (CI has no display).
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

pytest_plugins = ["tests.nats_fixtures"]
