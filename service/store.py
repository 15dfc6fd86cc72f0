"""The shop sessions' event log in SQLite (WAL mode): the truth that sessions are rebuilt from.

Every accepted batch is committed (``synchronous=FULL``: on disk, not only in the OS's cache)
before it is acknowledged, so neither ``kill -9`` nor a power cut loses an acknowledged event.
Each event keeps its sender's ``event_id`` and a digest of its content: a repeat is recognised
(and answered as a duplicate) however long ago the first one came. The latest plan of each shop
is kept too, so a restarted service goes on from the same plan version. One process owns a
database at a time (a lock file beside it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from instances import SchedEnvError

SCHEMA = """
CREATE TABLE IF NOT EXISTS shops (id TEXT PRIMARY KEY, created REAL NOT NULL, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    shop TEXT NOT NULL, seq INTEGER NOT NULL, event_id TEXT NOT NULL, digest TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (shop, seq), UNIQUE (shop, event_id));
CREATE TABLE IF NOT EXISTS plans (shop TEXT PRIMARY KEY, version INTEGER NOT NULL, body TEXT NOT NULL);
"""


class StoreError(SchedEnvError):
    """The database cannot be opened (locked by another server, not a database, not writable)."""


def default_path() -> Path:
    """Where ``sched-env serve`` keeps its shops without ``--db``: ``$SCHED_ENV_DB``, else
    ``$XDG_DATA_HOME/sched-env/shops.sqlite3`` (``~/.local/share/...``)."""
    if os.environ.get("SCHED_ENV_DB"):
        return Path(os.environ["SCHED_ENV_DB"])
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "sched-env" / "shops.sqlite3"


def digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:32]


class EventStore:
    """One SQLite connection shared by the service's threads (each call holds the lock)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path)
        self.lock = threading.Lock()
        self._owner = None
        try:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._owner = _own(self.path)
            # the default isolation: each write below is one transaction, committed by `with self.db`
            self.db = sqlite3.connect(":memory:" if self.path is None else self.path, check_same_thread=False)
            if self.path is not None:
                self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as error:
            raise StoreError(f"cannot use {path} as the shop database: {error}") from None

    def close(self) -> None:
        with self.lock:
            self.db.close()
            if self._owner is not None:
                self._owner.close()

    # ------------------------------------------------------------------ writes
    @contextlib.contextmanager
    def _transaction(self):
        """One transaction under the lock, committed (on disk) when the block ends; a database
        error (disk full, read-only) is a StoreError and leaves nothing written."""
        with self.lock:
            try:
                with self.db:
                    yield self.db
            except sqlite3.Error as error:
                raise StoreError(f"{self.path or 'the in-memory database'}: {error}") from None

    def create_shop(self, shop: str, created: float, config: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT INTO shops VALUES (?, ?, ?)", (shop, created, config))

    def delete_shop(self, shop: str) -> None:
        with self._transaction() as db:
            for table, column in (("events", "shop"), ("plans", "shop"), ("shops", "id")):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (shop,))

    def seen(self, shop: str, event_ids: list[str]) -> dict[str, str]:
        """event_id -> digest of the events of ``shop`` among ``event_ids`` already logged."""
        found: dict[str, str] = {}
        with self.lock:
            for first in range(0, len(event_ids), 500):
                piece = event_ids[first : first + 500]
                marks = ",".join("?" * len(piece))
                rows = self.db.execute(f"SELECT event_id, digest FROM events WHERE shop = ? AND event_id IN ({marks})",
                                       (shop, *piece))  # fmt: skip
                found.update(rows)
        return found

    def append(self, shop: str, first_seq: int, events: list[tuple[str, str, str]]) -> None:
        """Log (event_id, digest, body) rows as seq first_seq, first_seq + 1, ... in one transaction
        (on disk when it returns)."""
        rows = [(shop, first_seq + i, *event) for i, event in enumerate(events)]
        with self._transaction() as db:
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows)

    def save_plan(self, shop: str, version: int, body: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO plans VALUES (?, ?, ?)", (shop, version, body))

    # ------------------------------------------------------------------ reads (on start)
    def shops(self) -> list[tuple[str, float, str]]:
        with self.lock:
            return list(self.db.execute("SELECT id, created, config FROM shops ORDER BY created, id"))

    def events(self, shop: str) -> Iterator[str]:
        """The bodies of ``shop``'s events in order."""
        with self.lock:
            rows = self.db.execute("SELECT body FROM events WHERE shop = ? ORDER BY seq", (shop,)).fetchall()
        return (body for (body,) in rows)

    def plan(self, shop: str) -> tuple[int, str] | None:
        with self.lock:
            return self.db.execute("SELECT version, body FROM plans WHERE shop = ?", (shop,)).fetchone()


def _own(path: Path):
    """Hold an exclusive lock on ``path`` + ".lock" for the process's life (released by the OS on
    any exit, kill -9 included); a second server on the same database is refused."""
    import fcntl

    handle = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 (held open on purpose)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreError(f"{path} is in use by another sched-env server: give each server its own --db") from None
    return handle
