"""Where the fleet records live: this replica's SQLite index (``fleet`` table of ``index.db``)
and, with the S3 store, one object per replica (``<prefix>fleet/<replica>.json``) rewritten
when its records changed, which readers merge (counts summed, first and last seen widened).

Bounded: at most ``MAX_RECORDS`` rows per replica; beyond that the least recently seen go.
Records hold no credentials and no client addresses: an image, a platform, how it was placed,
what it got.  A reader never writes: an object that is corrupt, or written by a newer version
(``version`` above ``VERSION``), is reported and skipped, and nothing of it is lost.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
from collections.abc import Iterable

from proxy.errors import StoreUnavailable
from proxy.oci import jsondoc
from proxy.storage.records import FleetRecord
from proxy.storage.s3.bucket import Bucket

VERSION = 1
MAX_RECORDS = 200_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet (
    image TEXT NOT NULL, platform TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL,
    source TEXT NOT NULL, index_digest TEXT NOT NULL, chosen TEXT NOT NULL, chosen_platform TEXT NOT NULL,
    reason TEXT NOT NULL, first_seen REAL NOT NULL, last_seen REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (image, platform, outcome)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fleet_meta (version INTEGER NOT NULL, replica TEXT NOT NULL);
"""
_FIELDS = [f.name for f in dataclasses.fields(FleetRecord)]


class FleetError(ValueError):
    """Records that cannot be read (corrupt, or from a newer platproxy); the message says which."""


def merge(records: Iterable[FleetRecord]) -> list[FleetRecord]:
    """Pure: one record per (image, platform, outcome): counts summed, first and last seen
    widened, the rest from the most recent."""
    merged: dict[tuple[str, str, str], FleetRecord] = {}
    for r in records:
        was = merged.get(r.key)
        if was is None:
            merged[r.key] = r
            continue
        latest = r if r.last_seen >= was.last_seen else was
        first, last = min(r.first_seen, was.first_seen), max(r.last_seen, was.last_seen)
        merged[r.key] = dataclasses.replace(latest, first_seen=first, last_seen=last, count=r.count + was.count)
    return sorted(merged.values(), key=lambda r: r.key)


def encode(records: list[FleetRecord]) -> bytes:
    return json.dumps({"version": VERSION, "records": [dataclasses.astuple(r) for r in records]},
                      separators=(",", ":")).encode()  # fmt: skip


def decode(data: bytes, where: str) -> list[FleetRecord]:
    """``FleetError`` naming ``where`` when the data is not our records of a version we read."""
    try:
        doc = jsondoc.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FleetError(f"{where}: not fleet records ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("version"), int):
        raise FleetError(f"{where}: not fleet records")
    if doc["version"] > VERSION:
        raise FleetError(f"{where}: written by a newer platproxy (records version {doc['version']}; this one reads "
                         f"{VERSION}): skipped, left as it is")  # fmt: skip
    try:
        return [FleetRecord(*row) for row in doc.get("records", [])]
    except TypeError:
        raise FleetError(f"{where}: a record without the fields of version {VERSION}") from None


class FleetRecords:
    def __init__(self, db: sqlite3.Connection, bucket: Bucket | None = None) -> None:
        self.db = db
        self.bucket = bucket
        self.replica = ""
        """This cache's own name in the bucket, made once: a restart rewrites the same object
        (its records are this cache's, kept across the restart), never adds a second one."""
        try:
            self.db.executescript(_SCHEMA)
            if self.db.execute("SELECT version FROM fleet_meta").fetchone() is None:
                self.db.execute("INSERT INTO fleet_meta VALUES (?, ?)", (VERSION, secrets.token_hex(8)))
            self.replica = str(self.db.execute("SELECT replica FROM fleet_meta").fetchone()[0])
        except sqlite3.Error:
            pass  # a read-only cache: what it holds is still read

    def local(self) -> list[FleetRecord]:
        """This replica's records; ``FleetError`` when they come from a newer platproxy."""
        try:
            row = self.db.execute("SELECT version FROM fleet_meta").fetchone()
            if row is not None and row[0] > VERSION:
                raise FleetError(f"the fleet records in this cache are from a newer platproxy (version {row[0]}; "
                                 f"this one reads {VERSION})")  # fmt: skip
            return [FleetRecord(*r) for r in self.db.execute(f"SELECT {','.join(_FIELDS)} FROM fleet")]
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return []
            raise FleetError(f"the fleet records cannot be read: {exc}") from None

    def add(self, records: list[FleetRecord]) -> None:
        """Add observations (``count`` more of each); ``sqlite3.Error`` when they cannot be kept."""
        with self.db:
            self.db.executemany(
                f"INSERT INTO fleet VALUES ({','.join('?' * len(_FIELDS))}) ON CONFLICT DO UPDATE SET "
                "count = count + excluded.count, last_seen = MAX(last_seen, excluded.last_seen), "
                "first_seen = MIN(first_seen, excluded.first_seen), detail = excluded.detail, "
                "source = excluded.source, index_digest = excluded.index_digest, chosen = excluded.chosen, "
                "chosen_platform = excluded.chosen_platform, reason = excluded.reason",
                [dataclasses.astuple(r) for r in records],
            )
            total = self.db.execute("SELECT COUNT(*) FROM fleet").fetchone()[0]
            if total > MAX_RECORDS:
                self.db.execute("DELETE FROM fleet WHERE (image, platform, outcome) IN (SELECT image, platform, "
                                "outcome FROM fleet ORDER BY last_seen LIMIT ?)", (total - MAX_RECORDS,))  # fmt: skip
        # back into the database file now, so that the write-ahead log every tag hit reads stays short
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _key(self) -> str:
        assert self.bucket is not None
        return f"{self.bucket.config.prefix}fleet/{self.replica}.json"

    async def share(self) -> None:
        """Write this replica's records to the bucket (best effort: the next period tries again)."""
        if self.bucket is not None:
            await self.bucket.call("put_object", Key=self._key(), Body=encode(self.local()),
                                   ContentType="application/json")  # fmt: skip

    async def shared(self, exclude: str = "") -> tuple[list[FleetRecord], list[str]]:
        """Every replica's records from the bucket (but ``exclude``'s), merged, and what could not
        be read (one line each).  ``StoreUnavailable`` when the bucket cannot be listed."""
        assert self.bucket is not None
        prefix = f"{self.bucket.config.prefix}fleet/"
        keys: list[str] = []
        token: dict[str, str] = {}
        while True:
            page = await self.bucket.call("list_objects_v2", Prefix=prefix, **token)
            keys += [item["Key"] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            token = {"ContinuationToken": page["NextContinuationToken"]}
        found: list[FleetRecord] = []
        problems: list[str] = []
        for key in keys:
            if exclude and key == f"{prefix}{exclude}.json":
                continue
            try:
                data = await self.bucket.read(key)
                found += decode(data, key) if data is not None else []
            except FleetError as exc:
                problems.append(str(exc))
            except StoreUnavailable as exc:
                problems.append(f"{key}: {exc}")
        return merge(found), problems
