"""Which repository holds what (pure decisions, and the memory over a real tag index)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.config import UpstreamConfig
from proxy.oci.schema1 import EMPTY_TAR_DIGEST
from proxy.pull.members import Members, Verdict, after_probe, check_needed
from proxy.pull.route import Route
from proxy.storage.tagindex import TagIndex

D = "sha256:" + "1" * 64


@pytest.mark.parametrize(
    ("digest", "known", "stored", "ask"),
    [
        (D, False, True, True),  # on disk, never seen in this repository: ask first
        (D, True, True, False),
        (D, False, False, False),  # not stored: the fetch from this repository decides
        (EMPTY_TAR_DIGEST, False, True, False),  # platproxy's own empty layer
    ],
)
def test_check_needed(digest: str, known: bool, stored: bool, ask: bool) -> None:
    assert check_needed(digest, known, stored) is ask


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(200, Verdict.SERVE), (404, Verdict.NOT_HELD), (401, Verdict.NOT_HELD), (403, Verdict.NOT_HELD),
     (None, Verdict.UNCONFIRMED), (503, Verdict.UNCONFIRMED), (429, Verdict.UNCONFIRMED)],
)  # fmt: skip
def test_after_probe(status: int | None, verdict: Verdict) -> None:
    assert after_probe(status) is verdict


def route(upstream: str, repo: str) -> Route:
    return Route(UpstreamConfig(name=upstream, url=f"https://{upstream}"), repo)


def test_a_manifest_makes_its_references_members_of_that_repository_only(tmp_path: Path) -> None:
    layer, config = "sha256:" + "a" * 64, "sha256:" + "c" * 64
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": config, "size": 7},
                           "layers": [{"digest": layer, "size": 1234}]}).encode()  # fmt: skip
    members = Members(TagIndex(tmp_path / "index.db"), {})
    here = route("up", "team/app")
    members.note_manifest(here, D, manifest)
    assert members.holds(here, D) and members.holds(here, layer) and members.size(here, layer) == 1234
    assert not members.holds(route("up", "other/app"), layer)
    assert not members.holds(route("other", "team/app"), layer)
    # kept in the tag index: a new process (a restart) knows the same
    again = Members(TagIndex(tmp_path / "index.db"), {})
    assert again.holds(here, layer) and again.size(here, config) == 7
    again.add(here, {layer: None})  # an add without a size keeps the size known
    assert Members(TagIndex(tmp_path / "index.db"), {}).size(here, layer) == 1234


def test_a_manifest_is_made_from_its_config_or_its_schema1_layers() -> None:
    from proxy.pull.manifests import made_from

    config, layer = "sha256:" + "c" * 64, "sha256:" + "a" * 64
    assert made_from(json.dumps({"config": {"digest": config}, "layers": [{"digest": layer}]}).encode()) == [config]
    schema1 = {"fsLayers": [{"blobSum": layer}, {"blobSum": EMPTY_TAR_DIGEST}, {"blobSum": layer}]}
    assert made_from(json.dumps(schema1).encode()) == [layer]  # platproxy's own empty layer is no proof
    assert made_from(json.dumps({"manifests": [{"digest": layer}]}).encode()) == []  # an index: the upstream's word
    assert made_from(b"[[[") == []
