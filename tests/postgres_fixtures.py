"""Fixtures that start a throwaway PostgreSQL cluster (the machine's initdb and pg_ctl) for these tests.

No PostgreSQL server binaries means the tests that need one fail with the reason (where it looked),
never skip.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from organs.trails.pgserver import EmbeddedPostgres, PostgresError


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[EmbeddedPostgres]:
    """One PostgreSQL cluster for the session, in a temporary folder, removed at the end."""
    try:
        cluster = EmbeddedPostgres().start()
    except PostgresError as exc:
        pytest.fail(f"this test needs a PostgreSQL server: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def postgres_dsn(postgres_cluster: EmbeddedPostgres) -> str:
    """The dsn of a fresh, empty database of the session's cluster."""
    return postgres_cluster.create_database(f"t_{uuid.uuid4().hex[:16]}")
