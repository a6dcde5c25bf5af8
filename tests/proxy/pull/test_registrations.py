"""Node registrations: kept in SQLite across a restart, renewed, expired, removed; the targets
told when what places a node changed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from proxy.pull.registrations import Registrations
from proxy.storage.nodes import NodeRecords, decode, encode
from proxy.storage.records import NodeRecord


def test_register_renew_expire_remove_and_survive_a_restart(tmp_path: Path) -> None:
    now = [1000.0]
    db = sqlite3.connect(tmp_path / "index.db", isolation_level=None)
    book = Registrations(NodeRecords(db), ttl=100, clock=lambda: now[0])
    changes: list[str] = []
    book.on_change = lambda: changes.append("changed")
    asyncio.run(book.register("192.0.2.7", "linux/arm/v7", "docker"))
    assert book.platform_of("192.0.2.7") == "linux/arm/v7" and book.platform_of("192.0.2.8") == ""
    now[0] += 60
    asyncio.run(book.register("192.0.2.7", "linux/arm/v7", "docker"))  # renewed: no change to what places it
    assert changes == ["changed"]
    again = Registrations(NodeRecords(sqlite3.connect(tmp_path / "index.db")), ttl=100, clock=lambda: now[0])
    assert again.platform_of("192.0.2.7") == "linux/arm/v7"  # a restart keeps it
    now[0] += 99
    assert book.platform_of("192.0.2.7") == "linux/arm/v7"  # 99 s after the renewal
    now[0] += 2
    assert book.platform_of("192.0.2.7") == "" and book.live() == []  # expired
    asyncio.run(book.register("192.0.2.7", "linux/arm64/v8", "podman"))
    assert asyncio.run(book.remove("192.0.2.7")) is not None and book.platform_of("192.0.2.7") == ""
    assert asyncio.run(book.remove("192.0.2.7")) is None
    assert changes == ["changed", "changed", "changed"]


def test_a_shared_object_that_is_not_a_registration_is_ignored() -> None:
    record = NodeRecord("192.0.2.7", "linux/arm/v7", "docker", 1.0, 2.0)
    assert decode(encode(record)) == record
    for bad in (b"{", b"[]", b'{"address": 7}', encode(record).replace(b'"linux/arm/v7"', b"7")):
        assert decode(bad) is None
