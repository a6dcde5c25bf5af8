"""What a collection of the shared bucket removes: pure decisions over a listing of it.

The bucket has no per-replica budget (``proxy.storage.budget`` is one replica's disk), so it is
kept within ``[store.s3] max_size`` and ``max_age`` by a collection (``platproxy cache gc``, or
the one replica elected by the gc lease).  The rules are the file store's, applied to images
rather than to files one by one:

- when content was last used is the latest of its upload (the object's ``LastModified``) and
  the pulls replicas reported (batched, ``proxy.storage.s3.pulls``);
- an image is used when any of its parts is: a manifest or a config is as recent as the most
  recently pulled layer of any tag record that needs it (manifests are read from memory on warm
  pulls, so their own reports lag), and a base layer shared by many images as recent as the
  newest of them;
- content older than ``max_age`` goes, then the oldest goes first until the total fits the
  budget; content a fill holds a lease on never goes;
- a tag record that needs anything that went goes with it: no record outlives its content, so
  every record kept pulls without the upstream; and what only the dropped records needed goes
  too (an image goes whole).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from proxy.errors import PlatproxyError
from proxy.oci import jsondoc
from proxy.oci.names import check_digest
from proxy.storage.budget import choose_victims
from proxy.storage.records import ContentEntry


def parse_pulls(data: bytes) -> dict[str, float]:
    """A replica's batch of pull times (``{digest: unix time}``); anything else is ignored."""
    try:
        doc = jsondoc.loads(data)
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {
        k: float(v)
        for k, v in doc.items()
        if isinstance(k, str) and is_digest(k) and isinstance(v, int | float) and not isinstance(v, bool)
    }


def is_digest(text: str) -> bool:
    """A well-formed digest of a supported algorithm (keys of the bucket are parsed with it)."""
    try:
        check_digest(text)
    except PlatproxyError:
        return False
    return True


def merge_pulls(batches: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The latest pull of each digest over every batch (merging is idempotent: a batch merged
    twice changes nothing, so a collection that died before deleting merged batches is harmless)."""
    merged: dict[str, float] = {}
    for batch in batches:
        for digest, when in batch.items():
            if when > merged.get(digest, 0.0):
                merged[digest] = when
    return merged


def last_used(objects: Mapping[str, tuple[int, float]], pulls: Mapping[str, float],
              needs: Mapping[str, set[str]]) -> list[ContentEntry]:  # fmt: skip
    """Each stored object (``digest -> (size, uploaded)``) with when it was last used: its upload
    or its latest pull, and no earlier than the latest use of any image (``needs``: tag record ->
    the digests it needs) it belongs to."""
    own = {d: max(uploaded, pulls.get(d, 0.0)) for d, (_, uploaded) in objects.items()}
    image_time = {key: max((own.get(d, 0.0) for d in digests), default=0.0) for key, digests in needs.items()}
    when = dict(own)
    for key, digests in needs.items():
        for digest in digests:
            if digest in when and image_time[key] > when[digest]:
                when[digest] = image_time[key]
    return [ContentEntry(d, objects[d][0], when[d]) for d in sorted(objects)]


def plan(entries: Iterable[ContentEntry], budget: int, max_age: float, now: float,
         protected: set[str]) -> list[ContentEntry]:  # fmt: skip
    """What goes: everything unused for more than ``max_age`` seconds (0: no age limit), then the
    least recently used until the rest fits ``budget`` bytes (0: no budget); never ``protected``."""
    entries = list(entries)
    old = [e for e in entries if max_age and e.last_used < now - max_age and e.digest not in protected]
    gone = {e.digest for e in old}
    rest = [e for e in entries if e.digest not in gone]
    over = choose_victims(rest, budget, protected) if budget else []
    return sorted(old, key=lambda e: (e.last_used, e.digest)) + over


def collection(entries: Iterable[ContentEntry], needs: Mapping[str, set[str]], budget: int, max_age: float,
               now: float, protected: set[str]) -> tuple[list[ContentEntry], list[str]]:  # fmt: skip
    """What a collection removes: ``plan``'s content, the tag records that needed any of it, and
    what only those records needed (an image goes whole: its manifest and config are no use
    without its record, and would otherwise linger as the oldest content next time)."""
    entries = list(entries)
    victims = plan(entries, budget, max_age, now, protected)
    gone = {v.digest for v in victims}
    dropped = doomed_records(needs, gone)
    leftovers = unneeded(needs, dropped) - gone - protected
    return victims + [e for e in entries if e.digest in leftovers], dropped


def doomed_records(needs: Mapping[str, set[str]], gone: set[str]) -> list[str]:
    """The tag records (keys of ``needs``) that needed anything in ``gone``."""
    return sorted(key for key, digests in needs.items() if digests & gone)


def unneeded(needs: Mapping[str, set[str]], doomed: Iterable[str]) -> set[str]:
    """What the ``doomed`` records need that no other record does (``cache rm`` removes it)."""
    doomed = set(doomed)
    kept = set().union(*(d for k, d in needs.items() if k not in doomed))
    return set().union(*(needs[k] for k in doomed)) - kept
