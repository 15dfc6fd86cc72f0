"""The shop sessions' event log in SQLite (WAL mode): the truth that sessions are rebuilt from.

Every accepted batch is committed (``synchronous=FULL``: on disk, not only in the OS's cache)
before it is acknowledged, so neither ``kill -9`` nor a power cut loses an acknowledged event.
Each event keeps its sender's ``event_id`` and a digest of its content: a repeat is recognised
(and answered as a duplicate) however long ago the first one came. The latest plan of each shop
is kept too, so a restarted service goes on from the same plan version. One process owns a
database at a time (a lock file beside it).

**Format versions** (the ``meta`` table's ``format``): 1 logged every event with all its fields,
defaults included, so an optional field left out could not be told from one sent as null (a
``work_order_changed`` with only ``due`` then failed to replay, and one with only ``priority``
cleared the due date on restart); 2 logs each event as it was sent (fields left out stay out). A
format-1 database is migrated when it is opened; one of a newer format is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
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
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: The log format this version writes (see the module docstring).
FORMAT = 2


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
            self._upgrade()
        except (sqlite3.Error, OSError) as error:
            raise StoreError(f"cannot use {path} as the shop database: {error}") from None

    def _upgrade(self) -> None:
        """Record the format of a new database; migrate an older one (one transaction); refuse a newer one."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        logged = self.db.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None
        found = int(row[0]) if row is not None else (1 if logged else FORMAT)
        if found > FORMAT:
            raise StoreError(f"{self.path} holds a format-{found} event log, written by a newer sched-env (this one"
                             f" reads formats up to {FORMAT}): upgrade sched-env")  # fmt: skip
        with self.db:
            if found == 1:
                rows = self.db.execute("SELECT shop, seq, body FROM events WHERE body LIKE '%work_order_changed%'")
                changed = [(as_sent_v1(body), shop, seq) for shop, seq, body in rows.fetchall()]
                self.db.executemany("UPDATE events SET body = ? WHERE shop = ? AND seq = ?", changed)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (str(FORMAT),))

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

    def update_shop(self, shop: str, config: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE shops SET config = ? WHERE id = ?", (config, shop))

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


def read_shop_log(path: str | Path, shop: str) -> tuple[str, list[str]]:
    """One shop's creation config and event bodies (in order), read-only: a running server may hold
    the database (its lock is not taken, and nothing is written)."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"no shop database at {path}; give the file `sched-env serve --db` writes")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT id, config FROM shops WHERE id = ?", (shop,)).fetchone()
            if row is None:  # the shop's name (ShopCreate.name) works too, when one shop has it
                named = [r for r in db.execute("SELECT id, config FROM shops") if json.loads(r[1]).get("name") == shop]
                if len(named) != 1:
                    known = [f"{i} ({json.loads(c).get('name') or 'no name'})" for i, c in
                             db.execute("SELECT id, config FROM shops ORDER BY created LIMIT 20")]  # fmt: skip
                    what = "no shop" if not named else f"{len(named)} shops named"
                    raise StoreError(f"{path} has {what} {shop!r}; its shops: {', '.join(known) or 'none'}")
                row = named[0]
            version = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            rows = db.execute("SELECT body FROM events WHERE shop = ? ORDER BY seq", (row[0],)).fetchall()
        finally:
            db.close()
    except sqlite3.Error as error:
        raise StoreError(f"cannot read {path} as a shop database: {error}") from None
    if version is not None and int(version[0]) != FORMAT:
        raise StoreError(f"{path} is in log format {version[0]}; open it once with this version's `sched-env serve`")
    return row[1], [body for (body,) in rows]


def as_sent_v1(body: str) -> str:
    """A format-1 ``work_order_changed`` body as it was sent: a null priority was never accepted, so
    it was left out; a null due beside a priority was left out too (the common case; a due date
    cleared together with a new priority is read as the priority alone)."""
    import json

    event = json.loads(body)
    if event.get("type") == "work_order_changed":
        if event.get("priority") is None:
            event.pop("priority", None)
        elif event.get("due") is None:
            event.pop("due", None)
    return json.dumps(event, separators=(",", ":"))


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
