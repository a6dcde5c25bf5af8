"""Answering a tag in a form the client reads: as is, as Docker schema 2, or as signed schema 1.

``proxy.oci.convert.plan`` decides the form; this service makes it once and keeps it: the
converted manifest is stored under its own digest (beside its source, linked in the tag index)
and answers the tag and ``GET/HEAD …/manifests/<converted digest>`` with the same bytes, also
while the upstream is down.  Conversions are deterministic (a schema 1 digest covers the
payload, not the signature), so a lost cache, or another replica, makes the same digest; a
replica that finds the digest already stored uses the stored bytes rather than signing again.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple, NoReturn

import structlog

from proxy.config import Config
from proxy.errors import ManifestUnknown
from proxy.metrics import Metrics
from proxy.oci import jws
from proxy.oci.clients import client_class
from proxy.oci.convert import Form, NotConvertible, layer_problem, parse_manifest, plan, to_schema2
from proxy.oci.digests import digest_of
from proxy.oci.mediatypes import DOCKER_MANIFEST, DOCKER_SCHEMA1_SIGNED, IMAGE_TYPES, ClientCaps
from proxy.oci.schema1 import build_payload
from proxy.pull.content import ManifestContent
from proxy.pull.route import Route
from proxy.storage.tagindex import TagIndex

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

log = structlog.get_logger("platproxy.convert")

MEDIA_TYPES = {Form.SCHEMA2: DOCKER_MANIFEST, Form.SCHEMA1: DOCKER_SCHEMA1_SIGNED}


class Key(NamedTuple):
    """One conversion: a source manifest in one form (schema 1 also depends on name and tag)."""

    source: str
    form: Form
    name: str
    tag: str


@dataclass(frozen=True)
class Served:
    """The manifest a client gets for a tag, in the form it reads."""

    data: bytes
    media_type: str
    digest: str
    form: Form


class Conversions:
    def __init__(
        self,
        config: Config,
        content: ManifestContent,
        index: TagIndex,
        signing_key: Callable[[], EllipticCurvePrivateKey],
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.content = content
        self.index = index
        self.signing_key = signing_key
        self.metrics = metrics
        self.clock = clock
        self._making: dict[Key, asyncio.Task[Served]] = {}

    async def serve(self, route: Route, tag: str, digest: str, media_type: str, client: ClientCaps,
                    platform: str = "") -> Served:  # fmt: skip
        """The manifest ``digest`` (of ``media_type``) as this client reads it, made once."""
        form = plan(media_type, client)
        if form is Form.AS_IS:
            data = await self.content.load(route, digest)
            self._check_layers(route, tag, digest, media_type, data, client, platform)
            return Served(data, media_type, digest, form)
        enabled = self.config.compat.schema2 if form is Form.SCHEMA2 else self.config.compat.schema1
        if not enabled:
            self._refuse(route, tag, digest, media_type, client, platform,
                         f"conversion to {form.value} is turned off ([compat] {form.value} = false)")  # fmt: skip
        key = Key(digest, form, route.client_name, tag) if form is Form.SCHEMA1 else Key(digest, form, "", "")
        known = self.index.conversion(digest, form.value, key.name, key.tag)
        if known is not None:
            kept = await self.content.stored(known)
            if kept is not None:
                return Served(kept, MEDIA_TYPES[form], known, form)
        task = self._making.get(key)
        if task is None:
            task = asyncio.create_task(self._make(route, tag, digest, media_type, client, form, platform, key))
            self._making[key] = task
            task.add_done_callback(lambda _: self._making.pop(key, None))
        return await asyncio.shield(task)

    async def _make(self, route: Route, tag: str, digest: str, media_type: str, client: ClientCaps, form: Form,
                    platform: str, key: Key) -> Served:  # fmt: skip
        """Convert, unless the digest is already stored (an earlier run, another replica): then
        those bytes are the answer, so a schema 1 manifest is never signed twice."""
        source = await self.content.load(route, digest)
        try:
            schema2 = source if media_type == DOCKER_MANIFEST else to_schema2(source)
            unsigned = schema2 if form is Form.SCHEMA2 else await self._schema1_payload(route, tag, schema2)
        except NotConvertible as exc:
            self._refuse(route, tag, digest, media_type, client, platform, str(exc))
        made = digest_of(unsigned)
        data = await self.content.stored(made)
        if data is None:
            signed_at = datetime.fromtimestamp(self.clock(), UTC)
            data = unsigned if form is Form.SCHEMA2 else jws.sign(unsigned, self.signing_key(), signed_at)
            await self.content.keep(made, data, MEDIA_TYPES[form])
        try:
            self.index.put_conversion(digest, form.value, key.name, key.tag, made)
        except sqlite3.Error as exc:  # a read-only cache: the conversion is still served, made again next time
            log.warning("cannot record a conversion", digest=made, error=str(exc))
        if self.metrics is not None:
            self.metrics.conversions.labels(form.value).inc()
        log.info(
            "converted", repo=route.repo, tag=tag, source=digest, source_type=media_type, digest=made,
            media_type=MEDIA_TYPES[form], client=client_class(client), engine=client.engine,
        )  # fmt: skip
        return Served(data, MEDIA_TYPES[form], made, form)

    async def _schema1_payload(self, route: Route, tag: str, schema2: bytes) -> bytes:
        """The unsigned schema 1 form (its sha256 is the digest); the empty layer it may name is
        served by the blob service on request."""
        config_digest = parse_manifest(schema2)["config"].get("digest")
        if not isinstance(config_digest, str):
            raise NotConvertible("the manifest's config has no digest")
        config = await self.content.config_blob(route, config_digest)
        return build_payload(schema2, config, route.client_name, tag)

    def _check_layers(self, route: Route, tag: str, digest: str, media_type: str, data: bytes, client: ClientCaps,
                      platform: str) -> None:  # fmt: skip
        """A client that cannot unpack zstd gets an explained 404 for a zstd-only image."""
        if client.zstd or self.config.compat.zstd == "serve" or media_type not in IMAGE_TYPES or b"zstd" not in data:
            return
        try:
            problem = layer_problem(parse_manifest(data), zstd_ok=False, encrypted_ok=True)
        except NotConvertible:
            return
        if problem:
            self._refuse(route, tag, digest, media_type, client, platform, problem)

    def _refuse(self, route: Route, tag: str, digest: str, media_type: str, client: ClientCaps, platform: str,
                why: str) -> NoReturn:  # fmt: skip
        what = f"{route.repo}:{tag}" + (f" resolves to {platform} as" if platform else " is")
        raise ManifestUnknown(
            f"{what} {media_type}, which this client cannot read: {why}",
            {"digest": digest, "mediaType": media_type, "platform": platform or None,
             "client": client_class(client), "engine": client.engine or None, "reason": why},
        )  # fmt: skip
