"""The eviction decision as a pure function."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.oci.descriptors import references
from proxy.storage.budget import Entry, choose_victims

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
