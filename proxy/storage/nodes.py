"""Where node registrations are kept: this replica's SQLite index (``nodes`` table of
``index.db``, so they survive a restart), and, with the S3 store, one small object per node
under ``<prefix>nodes/`` so that every replica of a tier places a node that registered with any
of them.

A registration is tiny and changes rarely (a node registers at setup and renews now and then),
so replicas read the bucket's registrations on a period (``sync``: one listing, then only the
objects whose ETag changed), never on a request.  An object that is not a registration with
exactly our fields is ignored and logged, never trusted: whoever can write the bucket can
already serve any content, but a malformed object must not stop the others from being read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3

import structlog

from proxy.errors import StoreUnavailable
from proxy.oci import jsondoc
from proxy.storage.records import NodeRecord
from proxy.storage.s3.bucket import Bucket

log = structlog.get_logger("platproxy.nodes")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    address TEXT PRIMARY KEY, platform TEXT NOT NULL, runtime TEXT NOT NULL,
    registered_at REAL NOT NULL, expires_at REAL NOT NULL
);
"""
MAX_SHARED = 100_000
"""At most this many registrations are read from a bucket (a fleet is far smaller)."""


def node_key(prefix: str, address: str) -> str:
    return f"{prefix}nodes/{hashlib.sha256(address.encode()).hexdigest()[:24]}.json"


def encode(record: NodeRecord) -> bytes:
    return json.dumps(dataclasses.asdict(record), sort_keys=True).encode()


def decode(data: bytes) -> NodeRecord | None:
    """``None`` for anything that is not a registration with exactly our fields."""
    try:
        record = NodeRecord(**jsondoc.loads(data))
    except (ValueError, TypeError):
        return None
    if not all(isinstance(getattr(record, f), str) for f in ("address", "platform", "runtime")):
        return None
    if not all(isinstance(getattr(record, f), int | float) for f in ("registered_at", "expires_at")):
        return None
    return record


class NodeRecords:
    """Registrations here (SQLite: the tag index's database) and, with a bucket, shared."""

    def __init__(self, db: sqlite3.Connection, bucket: Bucket | None = None) -> None:
        self.db = db
        self.bucket = bucket
        self._etags: dict[str, str] = {}
        try:
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:  # a read-only cache: what it holds is still read
            log.warning("node registrations cannot be written here", error=str(exc))

    def local(self) -> list[NodeRecord]:
        try:
            rows = self.db.execute("SELECT * FROM nodes ORDER BY address").fetchall()
        except sqlite3.Error:
            return []
        return [NodeRecord(*row) for row in rows]

    def _put_local(self, record: NodeRecord) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO nodes VALUES (?,?,?,?,?)", dataclasses.astuple(record))

    def _delete_local(self, address: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM nodes WHERE address=?", (address,))

    async def put(self, record: NodeRecord) -> None:
        """Kept here (``sqlite3.Error`` when it cannot be), then shared (best effort, logged)."""
        self._put_local(record)
        if self.bucket is not None:
            key = node_key(self.bucket.config.prefix, record.address)
            try:
                await self.bucket.call("put_object", Key=key, Body=encode(record), ContentType="application/json")
            except StoreUnavailable as exc:
                log.warning("cannot share a node registration", address=record.address, error=str(exc))

    async def delete(self, address: str) -> None:
        self._delete_local(address)
        if self.bucket is not None:
            key = node_key(self.bucket.config.prefix, address)
            try:
                await self.bucket.call("delete_object", Key=key)
            except StoreUnavailable as exc:
                log.warning("cannot remove a shared node registration", address=address, error=str(exc))

    async def shared(self) -> list[NodeRecord] | None:
        """Every registration in the bucket (``None``: no bucket, or it cannot be read now).
        Objects read before and unchanged since (same ETag) are taken from the local index."""
        if self.bucket is None:
            return None
        prefix = f"{self.bucket.config.prefix}nodes/"
        known = {node_key(self.bucket.config.prefix, r.address): r for r in self.local()}
        found: list[NodeRecord] = []
        etags: dict[str, str] = {}
        token: dict[str, str] = {}
        try:
            while len(etags) < MAX_SHARED:
                page = await self.bucket.call("list_objects_v2", Prefix=prefix, **token)
                for item in page.get("Contents", []):
                    etags[item["Key"]] = item.get("ETag", "")
                if not page.get("IsTruncated"):
                    break
                token = {"ContinuationToken": page["NextContinuationToken"]}
            for key, etag in etags.items():
                if self._etags.get(key) == etag and key in known:
                    found.append(known[key])
                    continue
                data = await self.bucket.read(key)
                record = decode(data) if data is not None else None
                if record is None or node_key(self.bucket.config.prefix, record.address) != key:
                    if data is not None:
                        log.warning("ignoring a malformed node registration", key=key)
                    continue
                found.append(record)
        except StoreUnavailable as exc:
            log.warning("cannot read the shared node registrations", error=str(exc))
            return None
        self._etags = etags
        return found

    def replace_local(self, records: list[NodeRecord]) -> None:
        """The bucket's registrations become this replica's (best effort: a read-only cache keeps
        them in memory only)."""
        try:
            with self.db:
                self.db.execute("DELETE FROM nodes")
                self.db.executemany("INSERT OR REPLACE INTO nodes VALUES (?,?,?,?,?)",
                                    [dataclasses.astuple(r) for r in records])  # fmt: skip
        except sqlite3.Error as exc:
            log.warning("cannot keep the shared node registrations here", error=str(exc))
