"""The bucket collection's decisions (``proxy.storage.s3.retention``), as pure functions."""

from __future__ import annotations

import json

from proxy.storage.records import ContentEntry
from proxy.storage.s3.retention import (
    collection,
    doomed_records,
    last_used,
    merge_pulls,
    parse_pulls,
    plan,
    unneeded,
)

A, B, C, M, N = ("sha256:" + ch * 64 for ch in "abcde")


def test_pull_batches_merge_to_the_latest_pull_and_ignore_what_is_not_a_batch() -> None:
    assert parse_pulls(json.dumps({A: 5, "../etc/passwd": 9, B: "x", C: True}).encode()) == {A: 5.0}
    assert parse_pulls(b"[1, 2]") == {} and parse_pulls(b"not json") == {}
    assert merge_pulls([{A: 1, B: 7}, {A: 3}, {A: 2}]) == {A: 3, B: 7}
    assert merge_pulls([{A: 3}, {A: 3}]) == merge_pulls([{A: 3}])  # merging twice changes nothing


def test_a_manifest_is_as_recent_as_the_latest_pull_of_its_image() -> None:
    objects = {M: (100, 10.0), A: (1000, 10.0), B: (500, 10.0), N: (100, 10.0), C: (800, 10.0)}
    needs = {"tags/one": {M, A, B}, "tags/two": {N, C, B}}
    when = {e.digest: e.last_used for e in last_used(objects, {A: 50.0, C: 20.0}, needs)}
    # image one pulled at 50: its manifest and config too; B is shared: as recent as the newest user
    assert when == {M: 50.0, A: 50.0, B: 50.0, N: 20.0, C: 20.0}
    assert last_used({A: (1, 30.0)}, {A: 20.0}, {})[0].last_used == 30.0  # never older than its upload


def test_plan_removes_by_age_then_oldest_first_until_within_budget_never_protected() -> None:
    entries = [ContentEntry(A, 10, 100.0), ContentEntry(B, 10, 200.0), ContentEntry(C, 10, 300.0),
               ContentEntry(M, 10, 400.0)]  # fmt: skip
    assert [e.digest for e in plan(entries, 20, 0, 1000.0, set())] == [A, B]
    assert [e.digest for e in plan(entries, 20, 0, 1000.0, {A})] == [B, C]
    assert [e.digest for e in plan(entries, 0, 750.0, 1000.0, set())] == [A, B]  # unused for > 750 s
    assert [e.digest for e in plan(entries, 0, 0, 1000.0, set())] == []  # no limit: nothing goes
    assert [e.digest for e in plan(entries, 15, 850.0, 1000.0, {C})] == [A, B, M]  # age: A; budget: B, then M (not C)


def test_an_image_goes_whole_and_what_another_image_shares_stays() -> None:
    entries = [ContentEntry(M, 1, 10.0), ContentEntry(A, 100, 10.0), ContentEntry(C, 1, 10.0),
               ContentEntry(N, 1, 20.0), ContentEntry(B, 100, 20.0)]  # fmt: skip
    needs = {"one": {M, A, C}, "two": {N, B, C}}
    victims, dropped = collection(entries, needs, 150, 0, 100.0, set())
    # A alone brings it under budget; its record goes, and with it M, but not C (two needs it)
    assert [v.digest for v in victims] == [A, M] and dropped == ["one"]
    victims, dropped = collection(entries, needs, 150, 0, 100.0, {M})
    assert [v.digest for v in victims] == [A] and dropped == ["one"]  # a fill's lease keeps M


def test_records_go_with_what_they_need_and_rm_keeps_what_others_share() -> None:
    needs = {"one": {M, A, B}, "two": {N, C, B}}
    assert doomed_records(needs, {A}) == ["one"] and doomed_records(needs, {B}) == ["one", "two"]
    assert unneeded(needs, ["one"]) == {M, A} and unneeded(needs, ["one", "two"]) == {M, A, B, N, C}
