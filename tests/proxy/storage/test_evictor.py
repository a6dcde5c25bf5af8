"""The disk budget's usage rows against the files: mended at the server's start without holding
it (the walk runs on a thread), and content committed or removed while the walk ran is never
mistaken for a difference."""

from __future__ import annotations

import hashlib
from pathlib import Path

from proxy.storage.budget import Evictor
from proxy.storage.files import FileStore
from proxy.storage.tagindex import TagIndex


def _put(store: FileStore, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = store.path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


async def test_rows_are_mended_after_the_start_and_a_race_is_no_difference(tmp_path: Path) -> None:
    store, index = FileStore(tmp_path), TagIndex(tmp_path / "index.db")
    kept = _put(store, b"kept" * 10)
    index.note_content(kept, 40, 1.0)
    behind_our_back = _put(store, b"copied in" * 10)  # a file without a row
    index.note_content("sha256:" + "0" * 64, 1000, 1.0)  # a row without a file
    evictor = Evictor(store, index, 0, busy=set, unreachable=set)
    assert evictor.total == 1040  # the rows as they are, at once: no walk before the first answer
    await evictor.reconcile_in_background()
    assert index.content_digests() == {kept, behind_our_back}
    assert evictor.total == 40 + 90
    # the walk missed a file committed meanwhile, and saw one evicted meanwhile: neither is a difference
    late = _put(store, b"late" * 5)
    index.note_content(late, 20, 2.0)
    evicted = "sha256:" + hashlib.sha256(b"copied in" * 10).hexdigest()
    store.remove(evicted)
    index.forget_content(evicted)
    for prefix in {late[:9], evicted[:9]}:
        seen = [(d, 40, 1.0) for d in [kept] if d.startswith(prefix)] + [(evicted, 90, 1.0)] * (prefix == evicted[:9])
        evictor._apply(prefix, seen)
    assert evictor._total([]) == 60
    assert index.content_digests() == {kept, late}


def test_a_directory_lists_its_files_only(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    digest = _put(store, b"x")
    (store.path(digest).parent / "not-a-file").mkdir()
    assert store.shards() == [digest[:9]]
    assert [(d, size) for d, size, _ in store.shard(digest[:9])] == [(digest, 1)]
    assert store.shard("sha256:zz") == []


def test_eviction_drops_exactly_the_records_whose_content_went(tmp_path: Path) -> None:
    """A record goes with its config; one whose manifest only mentions that digest in an
    annotation (digest-shaped, not a reference) stays; so does one that needs nothing going."""
    import json

    from proxy.oci.mediatypes import OCI_CONFIG, OCI_MANIFEST
    from proxy.storage.records import TagRecord

    store, index = FileStore(tmp_path), TagIndex(tmp_path / "index.db")
    old_config, new_config = _put(store, b'{"old":1}'), _put(store, b'{"new":1}')
    index.note_content(old_config, 9, 1.0)
    index.note_content(new_config, 9, 50.0)

    def manifest(config: str, note: str) -> str:
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "annotations": {"note": note},
                           "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 9}, "layers": []})  # fmt: skip
        digest = _put(store, body.encode())
        index.note_content(digest, len(body), 100.0)
        return digest

    def record(tag: str, digest: str) -> TagRecord:
        made = TagRecord("docker.io", "r", tag, "", digest, OCI_MANIFEST, digest, None, "linux/amd64", "", "", 1, 1)
        index.put(made)
        return made

    record("needs-old", manifest(old_config, ""))
    record("mentions-old", manifest(new_config, old_config))
    record("needs-new", manifest(new_config, "other"))
    evictor = Evictor(store, index, 0, busy=set, unreachable=set)
    victims = evictor.run(budget=evictor.total - 1)  # the oldest entry alone: the old config
    assert [v.digest for v in victims] == [old_config]
    assert [r.tag for r in evictor.dropped] == ["needs-old"]
    assert sorted(r.tag for r in index.all_tags()) == ["mentions-old", "needs-new"]
    assert old_config not in index.content_digests()
