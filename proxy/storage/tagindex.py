"""The tag index: ``name:tag -> chosen digest (index digest, platform, reason, time)``.

SQLite (from the standard library) rather than JSON files: every retag is one transaction, so
a crash leaves either the old record or the new one, never a torn file; WAL mode lets readers
go on while a record is written; and ``cache ls``/eviction become queries instead of walks.
It also remembers the media type of every stored manifest (the content store keeps bytes), and
which repository of which upstream holds which digest (``members``: see ``proxy.pull.members``).
Calls are short and made from the event loop thread only.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import structlog

from proxy.storage.records import ContentEntry, TagRecord

log = structlog.get_logger("platproxy.tagindex")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tags (
    upstream TEXT NOT NULL, repo TEXT NOT NULL, tag TEXT NOT NULL, host TEXT NOT NULL,
    digest TEXT NOT NULL, media_type TEXT NOT NULL, upstream_digest TEXT NOT NULL,
    index_digest TEXT, platform TEXT NOT NULL DEFAULT '', label TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '', fetched_at REAL NOT NULL, checked_at REAL NOT NULL,
    PRIMARY KEY (upstream, repo, tag, host)
);
CREATE INDEX IF NOT EXISTS tags_by_index ON tags (index_digest);
CREATE TABLE IF NOT EXISTS manifests (
    digest TEXT PRIMARY KEY, media_type TEXT NOT NULL, size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS conversions (
    source TEXT NOT NULL, form TEXT NOT NULL, name TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,
    PRIMARY KEY (source, form, name, tag)
);
CREATE INDEX IF NOT EXISTS conversions_by_digest ON conversions (digest);
CREATE TABLE IF NOT EXISTS content (
    digest TEXT PRIMARY KEY, size INTEGER NOT NULL, last_used REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    upstream TEXT NOT NULL, repo TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER,
    PRIMARY KEY (upstream, repo, digest)
) WITHOUT ROWID;
"""


class TagIndex:
    def __init__(self, path: Path) -> None:
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
        except sqlite3.OperationalError as exc:
            if not path.exists():
                raise
            # A cache on a read-only filesystem still answers from what it holds.
            log.warning("tag index is read-only", error=str(exc))
            self.db = sqlite3.connect(f"file:{path}?immutable=1", uri=True, isolation_level=None,
                                      check_same_thread=False)  # fmt: skip

    def close(self) -> None:
        self.db.close()

    def get(self, upstream: str, repo: str, tag: str, host: str) -> TagRecord | None:
        row = self.db.execute(
            "SELECT * FROM tags WHERE upstream=? AND repo=? AND tag=? AND host=?", (upstream, repo, tag, host)
        ).fetchone()
        return TagRecord(*row) if row else None

    def put(self, record: TagRecord) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO tags VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                record.upstream, record.repo, record.tag, record.host, record.digest, record.media_type,
                record.upstream_digest, record.index_digest, record.platform, record.label, record.reason,
                record.fetched_at, record.checked_at,
            ),
        )  # fmt: skip

    def touch(self, record: TagRecord, checked_at: float) -> None:
        """Best effort: a cache that cannot be written (full, read-only) still serves what it has."""
        try:
            self.db.execute(
                "UPDATE tags SET checked_at=? WHERE upstream=? AND repo=? AND tag=? AND host=?",
                (checked_at, record.upstream, record.repo, record.tag, record.host),
            )
        except sqlite3.Error as exc:
            log.warning("cannot record a revalidation", error=str(exc))

    def records_of(self, upstream: str, repo: str, tag: str) -> list[TagRecord]:
        """Every target's record of one tag, the most recently checked first."""
        rows = self.db.execute("SELECT * FROM tags WHERE upstream=? AND repo=? AND tag=? ORDER BY checked_at DESC",
                               (upstream, repo, tag))  # fmt: skip
        return [TagRecord(*row) for row in rows]

    def tags(self, upstream: str, repo: str) -> list[str]:
        rows = self.db.execute(
            "SELECT DISTINCT tag FROM tags WHERE upstream=? AND repo=? ORDER BY tag", (upstream, repo)
        )
        return [r[0] for r in rows]

    def all_tags(self) -> list[TagRecord]:
        return [TagRecord(*row) for row in self.db.execute("SELECT * FROM tags ORDER BY upstream, repo, tag")]

    def manifest_type(self, digest: str) -> str | None:
        row = self.db.execute("SELECT media_type FROM manifests WHERE digest=?", (digest,)).fetchone()
        return str(row[0]) if row else None

    def put_manifest(self, digest: str, media_type: str, size: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO manifests VALUES (?,?,?)", (digest, media_type, size))

    # -- conversions: a manifest made for old clients, kept beside its source -------------------

    def conversion(self, source: str, form: str, name: str, tag: str) -> str | None:
        row = self.db.execute(
            "SELECT digest FROM conversions WHERE source=? AND form=? AND name=? AND tag=?", (source, form, name, tag)
        ).fetchone()
        return str(row[0]) if row else None

    def put_conversion(self, source: str, form: str, name: str, tag: str, digest: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO conversions VALUES (?,?,?,?,?)", (source, form, name, tag, digest))

    def conversions_of(self, sources: set[str]) -> set[str]:
        """The digests of every conversion made from these manifests."""
        found: set[str] = set()
        for source in sources:
            found.update(r[0] for r in self.db.execute("SELECT digest FROM conversions WHERE source=?", (source,)))
        return found

    def delete_tags(self, records: list[TagRecord]) -> None:
        with self.db:
            self.db.executemany(
                "DELETE FROM tags WHERE upstream=? AND repo=? AND tag=? AND host=?",
                [(r.upstream, r.repo, r.tag, r.host) for r in records],
            )

    # -- which repository of which upstream holds what (the cache is no oracle across them) ----

    def member(self, upstream: str, repo: str, digest: str) -> tuple[bool, int | None]:
        """``(known, size)``: the upstream holds ``digest`` in ``repo``, with its descriptor's size."""
        row = self.db.execute("SELECT size FROM members WHERE upstream=? AND repo=? AND digest=?",
                              (upstream, repo, digest)).fetchone()  # fmt: skip
        return (True, row[0]) if row else (False, None)

    def add_members(self, upstream: str, repo: str, digests: dict[str, int | None]) -> None:
        """Best effort: a cache that cannot be written asks the upstream again next time.  What
        the index already holds is not written again (a read, not a write transaction: the first
        serve of each of 100k cached tags after a start would otherwise write)."""
        try:
            held: dict[str, int | None] = {}
            wanted = list(digests)
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                marks = ",".join("?" * len(part))
                query = f"SELECT digest, size FROM members WHERE upstream=? AND repo=? AND digest IN ({marks})"
                held.update(self.db.execute(query, (upstream, repo, *part)).fetchall())
            rows = [(upstream, repo, d, size) for d, size in digests.items()
                    if d not in held or (size is not None and held[d] != size)]  # fmt: skip
            if not rows:
                return
            with self.db:
                self.db.executemany(
                    "INSERT INTO members VALUES (?,?,?,?) ON CONFLICT DO UPDATE SET size=COALESCE(excluded.size, size)",
                    rows,
                )
        except sqlite3.Error as exc:
            log.warning("cannot record what a repository holds", error=str(exc))

    # -- usage, for the disk budget ---------------------------------------------------------------

    def note_content(self, digest: str, size: int, when: float) -> None:
        self.db.execute("INSERT OR REPLACE INTO content VALUES (?,?,?)", (digest, size, when))

    def touch_content(self, used: dict[str, float]) -> None:
        """Best effort, like ``touch``."""
        if used:
            try:
                self.db.executemany("UPDATE content SET last_used=? WHERE digest=?", [(t, d) for d, t in used.items()])
            except sqlite3.Error as exc:
                log.warning("cannot record content use", error=str(exc))

    def forget_content(self, digest: str) -> None:
        self.db.execute("DELETE FROM content WHERE digest=?", (digest,))

    def reconcile_content(self, noted: list[tuple[str, int, float]], forgotten: list[str]) -> None:
        """Many usage rows added and removed in one transaction (the budget's reconciliation)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO content VALUES (?,?,?)", noted)
            self.db.executemany("DELETE FROM content WHERE digest=?", [(d,) for d in forgotten])

    def forget_evicted(self, digests: list[str]) -> None:
        """Content removed from the store: its usage row, manifest type and conversion links,
        in one transaction (eviction removes thousands at once)."""
        rows = [(d,) for d in digests]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM content WHERE digest=?", rows)
            self.db.executemany("DELETE FROM manifests WHERE digest=?", rows)
            self.db.executemany("DELETE FROM conversions WHERE source=?", rows)
            self.db.executemany("DELETE FROM conversions WHERE digest=?", rows)

    def content_digests(self, prefix: str = "") -> set[str]:
        """The digests with a usage row (those starting with ``prefix``, by the key's order)."""
        rows = self.db.execute("SELECT digest FROM content WHERE digest >= ? AND digest < ?", (prefix, prefix + "~"))
        return {row[0] for row in rows}

    def content_shards(self) -> set[str]:
        """The digest prefixes (``sha256:ab``) of every usage row."""
        rows = self.db.execute("SELECT DISTINCT substr(digest, 1, instr(digest, ':') + 2) FROM content")
        return {row[0] for row in rows}

    def content_entries(self) -> list[ContentEntry]:
        return [ContentEntry(*row) for row in self.db.execute("SELECT digest, size, last_used FROM content")]

    def content_total(self) -> int:
        return int(self.db.execute("SELECT COALESCE(SUM(size), 0) FROM content").fetchone()[0])
