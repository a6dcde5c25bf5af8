"""Conversions for old engines (``pull.conversions``): a Docker 17.09 engine gets an OCI image as
Docker schema 2 with the config byte-identical, made once and kept by its own digest, linked to
its source; with [compat] schema2 off it gets a clear refusal.  In-process, the in-memory store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.config import load_config
from proxy.errors import ManifestUnknown
from proxy.oci.clients import classify
from proxy.oci.mediatypes import DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, OCI_MANIFEST
from proxy.pull.content import ManifestContent
from proxy.pull.conversions import Conversions
from proxy.pull.route import Route
from proxy.storage.memory import MemoryStore
from proxy.storage.tagindex import TagIndex
from tests.ocibuild import image

DOCKER_1709 = classify([DOCKER_LIST, DOCKER_MANIFEST, "application/json", DOCKER_SCHEMA1_SIGNED],
                       "docker/17.09.1-ce go/go1.8.3 git-commit/19e2cf6 kernel/6.1.0 os/linux arch/amd64")  # fmt: skip
KEY = ec.generate_private_key(ec.SECP256R1())


async def conversions(tmp_path: Path, **compat: bool) -> tuple[Conversions, ManifestContent, TagIndex, str, bytes]:
    config = load_config(None, {f"compat.{k}": v for k, v in compat.items()})
    index = TagIndex(tmp_path / "index.db")
    content = ManifestContent(config, MemoryStore(tmp_path / "tmp"), index, {})
    oci = image({"architecture": "amd64", "os": "linux"})
    for blob in oci.blobs():
        await content.store.save(blob.digest, blob.data)
    await content.keep(oci.manifest.digest, oci.manifest.data, OCI_MANIFEST)
    return Conversions(config, content, index, lambda: KEY), content, index, oci.manifest.digest, oci.config.data


async def test_an_oci_image_becomes_schema2_once_config_untouched(tmp_path: Path) -> None:
    made, content, index, source, config = await conversions(tmp_path)
    route = Route(load_config(None).upstreams[0], "library/x")
    first = await made.serve(route, "1", source, OCI_MANIFEST, DOCKER_1709)
    assert first.media_type == DOCKER_MANIFEST and first.digest != source
    doc = json.loads(first.data)
    assert doc["mediaType"] == DOCKER_MANIFEST and doc["config"]["size"] == len(config)
    assert await content.stored(first.digest) == first.data  # kept under its own digest
    assert index.conversions_of({source}) == {first.digest}  # linked to its source (eviction, cache rm)
    again = await made.serve(route, "1", source, OCI_MANIFEST, DOCKER_1709)
    assert (again.digest, again.data) == (first.digest, first.data)


async def test_a_conversion_turned_off_is_a_clear_refusal(tmp_path: Path) -> None:
    made, _, _, source, _ = await conversions(tmp_path, schema2=False)
    route = Route(load_config(None).upstreams[0], "library/x")
    with pytest.raises(ManifestUnknown, match="schema2"):
        await made.serve(route, "1", source, OCI_MANIFEST, DOCKER_1709)
