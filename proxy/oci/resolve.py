"""Choose the one manifest of a list or index that this host should run, and say why.

``resolve`` is pure and synchronous: it reads only the documents it is given.  When it needs
a nested index, or an image manifest and config blob to learn the platform of an entry that
has none, it returns ``NeedContent`` naming those digests; the caller fetches them (the proxy
from its upstream, the CLI from an OCI layout) and calls again with them added.  Content that
does not hash to its digest is treated as unreadable, so nothing unverified decides anything.

Rules (moby's and containerd's list selection, made explicit where they differ):
- attestations (annotation or ``unknown/unknown``), artifacts and unknown media types are
  rejected with a reason; an entry with no platform is judged from its config blob, never
  guessed;
- nested indexes are followed to depth 4; a branch with no fit contributes nothing, so the
  choice falls back to other branches (moby's backtracking);
- every remaining entry is judged by ``hostinfo.compare`` (vector rank, features, os.version);
- ties: rank (and Windows closeness), then a media type the client accepts, then gzip over a
  zstd twin for clients without zstd (zstd for clients with it), then specificity (explicit
  variant, features, os.features), then index order.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any, Protocol

from hostinfo import HostProfile, Platform, PlatformError, Rejection, compare, normalize, preference_vector
from hostinfo.validate import platform_warnings
from proxy.oci import jsondoc
from proxy.oci.decision import Candidate, Decision, NeedContent, Verdict
from proxy.oci.descriptors import entry_kind
from proxy.oci.digests import matches
from proxy.oci.mediatypes import (
    CONFIG_TYPES,
    IMAGE_TYPES,
    INDEX_TYPES,
    ZSTD_ANNOTATION,
    ClientCaps,
)

MAX_DEPTH = 4
Contents = Mapping[str, bytes | None]


class InvalidIndex(ValueError):
    """The document is not a manifest list or image index; the message says why."""


__all__ = ["Candidate", "Decision", "InvalidIndex", "NeedContent", "Verdict"]  # the answers, re-exported


def parse_index(data: bytes) -> dict[str, Any]:
    """Parse and check a manifest list / image index document."""
    try:
        doc = jsondoc.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidIndex(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidIndex("not a JSON object")
    media_type = doc.get("mediaType")
    manifests = doc.get("manifests")
    if media_type is not None and media_type not in INDEX_TYPES:
        raise InvalidIndex(f"mediaType {media_type!r} is not a manifest list or image index")
    if not isinstance(manifests, list):
        raise InvalidIndex("no 'manifests' list: not a manifest list or image index")
    return doc


UNAVAILABLE = "is not available"
"""The reason's ending for content the caller could not give (``resolve --index`` without ``--blobs``)."""


def verified(contents: Contents, digest: str) -> bytes | None:
    """The bytes stored for ``digest`` if they really hash to it."""
    data = contents.get(digest)
    return data if data is not None and matches(digest, data) else None


def resolve(
    index: bytes, host: HostProfile, client: ClientCaps, contents: Contents | None = None
) -> Decision | NeedContent:
    """Choose from ``index`` for ``host``; see the module docstring for the rules."""
    walk = _Walk(host, client, contents or {})
    walk.index(parse_index(index), path=(), positions=(), depth=1)
    if walk.needed:
        return NeedContent(tuple(sorted(walk.needed)), frozenset(walk.needed_blobs))
    ranked = sorted(walk.accepted, key=lambda c: c.sort_key)
    return Decision(
        chosen=ranked[0] if ranked else None,
        candidates=ranked,
        rejected=walk.rejected,
        warnings=walk.warnings,
        host=str(host.platform),
        runs=[f"{s} ({s.label})" for s in preference_vector(host)],
    )


Wanted = tuple[str, bool]
"""A document ``resolve`` asked for: its digest, and whether it is a blob (a config)."""


def resolution(index: bytes, host: HostProfile, client: ClientCaps) -> Generator[Wanted, bytes | None, Decision]:
    """``resolve`` as a conversation: yields each document it needs, is sent its bytes (``None``:
    not available), returns the decision.  The one loop behind the synchronous and async forms."""
    contents: dict[str, bytes | None] = {}
    while True:
        outcome = resolve(index, host, client, contents)
        if isinstance(outcome, Decision):
            return outcome
        for digest in outcome.digests:
            contents[digest] = yield digest, digest in outcome.blobs


def resolve_loading(
    index: bytes, host: HostProfile, client: ClientCaps, load: Callable[[str], bytes | None]
) -> Decision:
    """``resolve``, reading what it needs with ``load`` (``None``: not available)."""
    steps = resolution(index, host, client)
    try:
        digest, _ = next(steps)
        while True:
            digest, _ = steps.send(load(digest))
    except StopIteration as done:
        decision: Decision = done.value
        return decision


class ContentSource(Protocol):
    """Where ``resolve_fetching`` gets the documents ``resolve`` asks for: the proxy's cache, a
    live registry, a running platproxy.  ``None``: not available (the entry is judged unreadable)."""

    async def manifest(self, digest: str) -> bytes | None: ...

    async def blob(self, digest: str) -> bytes | None: ...


async def resolve_fetching(index: bytes, host: HostProfile, client: ClientCaps, source: ContentSource) -> Decision:
    """``resolve``, fetching what it needs from ``source``."""
    steps = resolution(index, host, client)
    try:
        digest, is_blob = next(steps)
        while True:
            digest, is_blob = steps.send(await (source.blob(digest) if is_blob else source.manifest(digest)))
    except StopIteration as done:
        decision: Decision = done.value
        return decision


class _Walk:
    """One pass over an index tree, collecting candidates, verdicts and missing documents."""

    def __init__(self, host: HostProfile, client: ClientCaps, contents: Contents) -> None:
        self.host = host
        self.client = client
        self.contents = contents
        self.accepted: list[Candidate] = []
        self.rejected: list[Verdict] = []
        self.warnings: list[str] = []
        self.needed: set[str] = set()
        self.needed_blobs: set[str] = set()

    def reject(self, digest: str, platform: str, reason: str) -> None:
        self.rejected.append(Verdict(digest=digest, platform=platform, reason=reason))

    def index(self, doc: dict[str, Any], path: tuple[str, ...], positions: tuple[int, ...], depth: int) -> None:
        entries = doc.get("manifests", [])
        self._warn_unlabeled(entries)
        for pos, entry in enumerate(entries):
            self.entry(entry, path, (*positions, pos), depth)

    def entry(self, entry: Any, path: tuple[str, ...], positions: tuple[int, ...], depth: int) -> None:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            self.reject("", "", "malformed descriptor: not an object with a digest")
            return
        digest: str = entry["digest"]
        media_type = entry.get("mediaType", "")
        found_annotations = entry.get("annotations")
        annotations: dict[str, Any] = found_annotations if isinstance(found_annotations, dict) else {}
        raw = entry.get("platform")
        shown = _show(raw)
        kind = entry_kind(entry)
        if kind == "attestation":
            self.reject(digest, shown, "attestation manifest (vnd.docker.reference.type), not a runnable image")
            return
        if media_type not in IMAGE_TYPES and media_type not in INDEX_TYPES:
            self.reject(digest, shown, f"media type {media_type!r} is not an image manifest or index; ignored")
            return
        if kind == "artifact":
            self.reject(digest, shown, f"artifact ({entry['artifactType']}), not a runnable image")
            return
        if raw is None and media_type in INDEX_TYPES:
            self._nested(digest, shown, path, positions, depth)  # its entries carry the platforms
            return
        if raw is None:
            platform = self._platform_from_config(digest)
            if platform is None:
                return
            shown = f"{platform} (from its config)"
        else:
            try:
                platform = Platform.from_descriptor(raw)
            except PlatformError as exc:
                self.reject(digest, shown, f"invalid platform: {exc}")
                return
            self.warnings += [f"{digest[:19]} {shown}: {w}" for w in platform_warnings(platform)]
        verdict = compare(self.host, platform)
        if isinstance(verdict, Rejection):
            self.reject(digest, shown, verdict.reason)
            return
        if media_type in INDEX_TYPES:
            self._nested(digest, shown, path, positions, depth)
            return
        raw_variant = bool(raw.get("variant")) if isinstance(raw, dict) else False
        specificity = len(platform.features) + len(platform.os_features) + int(raw_variant)
        zstd = annotations.get(ZSTD_ANNOTATION) == "true"
        key = (
            verdict.index,
            verdict.closeness,
            0 if self.client.accepts_type(media_type) else 1,
            int(zstd) if not self.client.zstd else int(not zstd),
            -specificity,
            positions,
        )
        size = entry["size"] if isinstance(entry.get("size"), int) else 0
        self.accepted.append(
            Candidate(
                digest=digest,
                media_type=media_type,
                size=size,
                platform=normalize(platform),
                rank=verdict.index,
                label=verdict.label,
                path=path,
                sort_key=key,
            )
        )

    def _nested(self, digest: str, shown: str, path: tuple[str, ...], positions: tuple[int, ...], depth: int) -> None:
        if depth >= MAX_DEPTH:
            self.reject(digest, shown, f"nested index deeper than {MAX_DEPTH} levels; not followed")
            return
        if digest in path:
            self.reject(digest, shown, "nested index refers to itself; not followed")
            return
        data = self._read(digest)
        if data is None:
            if digest not in self.needed:
                self.reject(digest, shown, f"nested index {self._unreadable(digest)}")
            return
        try:
            doc = parse_index(data)
        except InvalidIndex as exc:
            self.reject(digest, shown, f"nested index is invalid: {exc}")
            return
        self.index(doc, (*path, digest), positions, depth + 1)

    def _platform_from_config(self, digest: str) -> Platform | None:
        manifest = self._read(digest)
        if manifest is None:
            if digest not in self.needed:
                self.reject(digest, "", f"no platform, and its manifest (to check) {self._unreadable(digest)}")
            return None
        try:
            config = jsondoc.loads(manifest)["config"]
            config_digest, config_type = config["digest"], config.get("mediaType", "")
        except (ValueError, KeyError, TypeError):
            self.reject(digest, "", "no platform, and its manifest has no readable config descriptor")
            return None
        if config_type not in CONFIG_TYPES:
            self.reject(digest, "", f"no platform; its config is {config_type!r}: an artifact, not an image")
            return None
        blob = self._read(config_digest, is_blob=True)
        if blob is None:
            if config_digest not in self.needed:
                self.reject(
                    digest, "", f"no platform, and its config blob (to check) {self._unreadable(config_digest)}"
                )
            return None
        try:
            return Platform.from_descriptor(jsondoc.loads(blob))
        except (ValueError, PlatformError) as exc:
            self.reject(digest, "", f"no platform, and its config does not name one ({exc})")
            return None

    def _unreadable(self, digest: str) -> str:
        """Why content asked for is missing: never given (``UNAVAILABLE``), or given and wrong."""
        return UNAVAILABLE if self.contents.get(digest) is None else "did not match its digest"

    def _read(self, digest: str, *, is_blob: bool = False) -> bytes | None:
        if digest not in self.contents:
            self.needed.add(digest)
            if is_blob:
                self.needed_blobs.add(digest)
            return None
        return verified(self.contents, digest)

    def _warn_unlabeled(self, entries: list[Any]) -> None:
        """AlmaLinux's v3 build without a variant lost to its v2 sibling: say so when it can happen
        (siblings of the same os: a windows entry has no levels beside linux ones)."""
        amd64 = [e for e in entries if isinstance(e, dict) and _arch(e) == "amd64"]
        for os_name in sorted({_os(e) for e in amd64}):
            same = [e for e in amd64 if _os(e) == os_name]
            if any(_variant(e) for e in same):
                for e in same:
                    if not _variant(e):
                        self.warnings.append(
                            f"{str(e.get('digest'))[:19]} {os_name}/amd64 has no variant and counts as v1 (baseline) "
                            "although its siblings carry levels"
                        )


def _platform_dict(entry: dict[str, Any]) -> dict[str, Any]:
    p = entry.get("platform")
    return p if isinstance(p, dict) else {}


def _os(entry: dict[str, Any]) -> str:
    return str(_platform_dict(entry).get("os", "")).lower()


def _arch(entry: dict[str, Any]) -> str:
    return str(_platform_dict(entry).get("architecture", "")).lower()


def _variant(entry: dict[str, Any]) -> str:
    return str(_platform_dict(entry).get("variant") or "")


def _show(raw: Any) -> str:
    """The platform as the descriptor wrote it, for messages."""
    if not isinstance(raw, dict):
        return "(no platform)"
    parts = [str(raw.get("os", "?")), str(raw.get("architecture", "?"))]
    if raw.get("variant"):
        parts.append(str(raw["variant"]))
    text = "/".join(parts)
    if raw.get("os.version"):
        text += f" os.version={raw['os.version']}"
    return text
