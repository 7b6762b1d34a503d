"""Shared pytest configuration."""

pytest_plugins = ["tests.nats_fixtures"]
