"""The eviction decision as a pure function, and what a tag record protects."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from proxy.oci.descriptors import references
from proxy.oci.digests import digest_of
from proxy.oci.mediatypes import OCI_MANIFEST
from proxy.oci.schema1 import EMPTY_TAR_DIGEST
from proxy.storage.budget import Entry, choose_victims, needed_by
from proxy.storage.files import FileStore
from proxy.storage.records import TagRecord
from proxy.storage.tagindex import TagIndex

A, B, C, D = ("sha256:" + c * 64 for c in "abcd")


def test_oldest_first_until_within_budget() -> None:
    entries = [Entry(A, 10, 1.0), Entry(B, 10, 3.0), Entry(C, 10, 2.0)]
    assert [e.digest for e in choose_victims(entries, 15, set())] == [A, C]
    assert choose_victims(entries, 30, set()) == []


def test_protected_entries_are_skipped() -> None:
    entries = [Entry(A, 10, 1.0), Entry(B, 10, 3.0), Entry(C, 10, 2.0)]
    assert [e.digest for e in choose_victims(entries, 15, {A})] == [C, B]
    assert choose_victims(entries, 0, {A, B, C}) == []


@given(st.lists(st.tuples(st.integers(1, 1000), st.floats(0, 1e6)), max_size=30), st.integers(0, 20000), st.data())
def test_victims_respect_budget_and_protection(
    sizes: list[tuple[int, float]], budget: int, data: st.DataObject
) -> None:
    entries = [Entry(f"sha256:{i:064x}", size, used) for i, (size, used) in enumerate(sizes)]
    protected = (
        set(data.draw(st.lists(st.sampled_from([e.digest for e in entries]), unique=True))) if entries else set()
    )
    victims = choose_victims(entries, budget, protected)
    assert not {v.digest for v in victims} & protected
    remaining = sum(e.size for e in entries) - sum(v.size for v in victims)
    unprotected_left = [e for e in entries if e.digest not in protected and e not in victims]
    assert remaining <= budget or not unprotected_left
    if victims:  # least recently used go first
        assert max(v.last_used for v in victims) <= min((e.last_used for e in unprotected_left), default=float("inf"))


def test_references() -> None:
    manifest = b'{"config": {"digest": "%s"}, "layers": [{"digest": "%s"}, {"digest": "%s"}]}' % (
        A.encode(), B.encode(), C.encode(),
    )  # fmt: skip
    assert references(manifest) == {A, B, C}
    assert references(b'{"manifests": [{"digest": "%s"}]}' % D.encode()) == {D}
    assert references(b"not json") == set()
    assert references(b'{"fsLayers": [{"blobSum": "%s"}, {"blobSum": "%s"}]}' % (A.encode(), B.encode())) == {A, B}


def test_a_conversion_is_kept_with_its_source(tmp_path: Path) -> None:
    """What a tag needs includes the manifests made from its chosen one for old engines, and the
    blobs those name (the empty layer of a schema 1 conversion)."""
    store, index = FileStore(tmp_path), TagIndex(tmp_path / "index.db")
    source = b'{"config": {"digest": "%s"}, "layers": [{"digest": "%s"}]}' % (A.encode(), B.encode())
    converted = b'{"fsLayers": [{"blobSum": "%s"}, {"blobSum": "%s"}]}' % (B.encode(), EMPTY_TAR_DIGEST.encode())
    for data in (source, converted):
        with store.writer(digest_of(data)) as w:
            w.write(data)
            w.commit()
    index.put_conversion(digest_of(source), "schema1", "library/x", "1", digest_of(converted))
    record = TagRecord("up", "library/x", "1", "linux/amd64", digest_of(source), OCI_MANIFEST, digest_of(source),
                       None, "", "", "", 0.0, 0.0)  # fmt: skip
    assert needed_by(store, index, [record]) == {digest_of(source), digest_of(converted), A, B, EMPTY_TAR_DIGEST}
    index.forget_evicted([digest_of(source)])  # the source evicted: its conversion link goes with it
    assert needed_by(store, index, [record]) == {digest_of(source), A, B}
