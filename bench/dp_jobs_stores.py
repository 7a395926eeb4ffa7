"""What bench/dp_jobs.py creates for a run and removes after it: a database, Redis keys, settings.

None of it needs Django, so the database exists before Django is set up against it.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from cryptography.fernet import Fernet
from psycopg import sql


def admin_url(database_url: str) -> tuple[str, str]:
    """The maintenance database's URL on the same server, and the name of the bench database."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit(f"--database-url names no database: {database_url}")
    return urlunsplit(parts._replace(path="/postgres")), name


def create_database(database_url: str, replace: bool) -> None:
    admin, name = admin_url(database_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and not replace:
            raise SystemExit(
                f"Database {name!r} already exists. This benchmark drops its database at the end; "
                "pass --replace-database to drop and recreate it."
            )
        if exists:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(database_url: str) -> None:
    admin, name = admin_url(database_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def remove_redis_keys(redis_url: str, queue: str) -> int:
    """Delete the queue and Kombu's bookkeeping for it; other keys in that Redis db are left alone."""
    client = redis.Redis.from_url(redis_url)
    removed = 0
    for key in client.scan_iter(match=f"*{queue}*"):
        removed += client.delete(key)
    return removed


def settings_env(args: argparse.Namespace, tmp: Path, queue: str) -> dict[str, str]:
    """Every setting the web and worker processes (and this one) run with."""
    return {
        "DATABASE_URL": args.database_url,
        "DATABASE_CONN_MAX_AGE": str(args.conn_max_age),
        "REDIS_URL": args.redis_url,
        "CELERY_BROKER_URL": args.redis_url,
        "SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        "CLOAKROOM_DATA_KEYS": Fernet.generate_key().decode(),
        "CLOAKROOM_VAR_DIR": str(tmp / "var"),
        "CLOAKROOM_PRIVATE_ROOT": str(tmp / "private"),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CLOAKROOM_DP_QUEUE": queue,
        "DEBUG": "false",
        "LOG_LEVEL": "INFO",
    }
