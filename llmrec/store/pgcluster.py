"""A throwaway PostgreSQL cluster for tests, benchmarks and trying the PostgreSQL store on one machine.

    with ThrowawayCluster() as pg:             # initdb in a temporary folder, postgres on a Unix socket
        store = PostgresStore(pg.dsn)

It uses the server binaries of Debian's ``postgresql-15`` (``/usr/lib/postgresql/15/bin``, or ``PG_BIN``). As
root, the cluster is owned by the ``postgres`` system user (``initdb`` refuses root) and runs as that user;
otherwise by the current user. The server listens only on a Unix socket in its own folder (and on a free
loopback port, for clients that need TCP), with ``fsync`` on: the fault tests kill it and restart it
(``restart``), and a test of durability must not run without it."""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from llmrec.errors import StoreError

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"


def pg_bin() -> Path | None:
    """The folder of ``initdb`` / ``pg_ctl`` / ``postgres`` (``PG_BIN`` or Debian's), or None if absent."""
    for d in (os.environ.get("PG_BIN"), DEFAULT_BIN):
        if d and (Path(d) / "initdb").exists():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayCluster:
    """initdb + postgres in a temporary folder; ``dsn`` for psycopg; ``stop`` / ``restart`` / ``kill``."""

    def __init__(self, root: str | Path | None = None, port: int | None = None) -> None:
        b = pg_bin()
        if b is None:
            raise StoreError("postgresql: initdb not found (install Debian's postgresql-15, or set PG_BIN)")
        self.bin = b
        self._tmp = None if root is not None else tempfile.mkdtemp(prefix="llmrec-pg-")
        self.root = Path(root or self._tmp)
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.port = port or free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.proc: subprocess.Popen | None = None

    @property
    def dsn(self) -> str:
        """The connection string (Unix socket, database ``postgres``, the cluster's superuser)."""
        return f"host={self.sock} port={self.port} dbname=postgres user={self.user}"

    @property
    def url(self) -> str:
        """The same as a ``postgresql://`` URL (what ``llmrec.store.open_store`` and ``--store`` take)."""
        return f"postgresql:///postgres?host={self.sock}&port={self.port}&user={self.user}"

    @property
    def tcp_dsn(self) -> str:
        """The same over TCP on 127.0.0.1."""
        return f"host=127.0.0.1 port={self.port} dbname=postgres user={self.user}"

    def _run(self, args: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *args] if os.geteuid() == 0 else args

    def start(self) -> "ThrowawayCluster":
        """initdb (first time) and start the server; returns once it accepts connections."""
        self.sock.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, self.user)
            shutil.chown(self.sock, self.user)
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(self._run([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", self.user,
                                      "--no-locale", "-E", "UTF8"]), check=True, capture_output=True)
        log = open(self.root / "postgres.log", "ab")
        self.proc = subprocess.Popen(
            self._run([str(self.bin / "postgres"), "-D", str(self.data), "-k", str(self.sock), "-p", str(self.port),
                       "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
                       "-c", "shared_buffers=128MB"]),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise StoreError(f"postgresql: the server exited ({self.root / 'postgres.log'})")
            ok = subprocess.run([str(self.bin / "pg_isready"), "-h", str(self.sock), "-p", str(self.port),
                                 "-U", self.user, "-d", "postgres"],
                                capture_output=True)
            if ok.returncode == 0:
                return
            time.sleep(0.1)
        raise StoreError(f"postgresql: not ready after {timeout:.0f} s ({self.root / 'postgres.log'})")

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (a crash: recovery replays the WAL at the next start)."""
        if self.proc is not None:
            pids = self._server_pids()
            subprocess.run(["pkill", "-KILL", "-s", str(self.proc.pid)], capture_output=True)
            self.proc.wait()
            self.proc = None
            deadline = time.monotonic() + 30
            while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)  # the postmaster is runuser's child: gone once the kernel has reaped it

    def _server_pids(self) -> list[int]:
        """The postmaster's pid (from its pid file) and its backends'."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        return [pid, *map(int, kids)]

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected)."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None

    def restart(self, crash: bool = False) -> None:
        """Stop (or kill, ``crash``) and start again on the same folder and port."""
        self.kill() if crash else self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove a temporary folder."""
        self.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "ThrowawayCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
