"""Shared pytest configuration."""

import os

# Rendering tests and pygame run headless everywhere (CI has no display).
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

pytest_plugins = ["tests.nats_fixtures", "tests.postgres_fixtures", "tests.vllm_fixtures"]


# --- brains and training (issue 3) -------------------------------------------------------------
import pytest  # noqa: E402


@pytest.fixture
def compose_run():
    """Compose conf/config.yaml with overrides into a validated train.config.RunConfig."""
    from hydra import compose, initialize_config_module

    from train.config import register_configs, to_run_config

    register_configs()

    def make(*overrides: str):
        with initialize_config_module("conf", version_base="1.3"):
            return to_run_config(compose("config", overrides=list(overrides)))

    return make
