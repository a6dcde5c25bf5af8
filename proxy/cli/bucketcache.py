"""``platproxy cache ls | gc | rm`` on a bucket-backed configuration: the shared bucket, as a whole.

The same commands as for a cache directory (``proxy.cli.cache``), on what every replica shares:
``ls`` lists the shared tag records, ``gc`` collects the bucket down to ``[store.s3] max_size``
and ``max_age`` (holding the gc lease, so it never runs beside the elected replica's collection)
and aborts abandoned multipart uploads, ``rm`` forgets an image.  ``--dry-run`` prints what
would go and changes nothing.  Safe beside running replicas: a replica that finds content gone
fetches it again, and nothing a fill holds a lease on is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from proxy.cli.common import fail
from proxy.cli.tables import print_table, print_tags, tag_row
from proxy.config import Config, parse_duration, parse_size
from proxy.errors import StoreUnavailable
from proxy.oci.names import ImageRef
from proxy.pull.route import route
from proxy.sizes import human
from proxy.storage.factory import with_bucket_collector
from proxy.storage.records import TagRecord

if TYPE_CHECKING:  # the types only: the factory opens the bucket
    from proxy.storage.s3.collect import Collection, Collector

T = TypeVar("T")


def _on_bucket(config: Config, work: Callable[[Collector], Awaitable[T]]) -> T:
    """``work`` on the configured bucket; ``StoreUnavailable`` when it cannot be used."""
    return asyncio.run(with_bucket_collector(config, work))


def _where(config: Config) -> str:
    s3 = config.store.s3
    return f"bucket {s3.bucket} ({s3.endpoint or 'AWS'}, prefix {s3.prefix!r})"


def run_ls(args: argparse.Namespace, config: Config) -> int:
    try:
        found = _on_bucket(config, lambda c: c.look())
    except StoreUnavailable as exc:
        return fail("cache ls", f"{_where(config)}: {exc}")
    now = time.time()
    rows: list[dict[str, Any]] = []
    for key, r in sorted(found.records.items(), key=lambda kv: kv[1].image):
        sizes = [found.objects.get(d) for d in found.needs[key]]
        rows.append(tag_row(r, sum(s[0] for s in sizes if s), None not in sizes, now))
    if args.json:
        print(json.dumps({"bucket": config.store.s3.bucket, "prefix": config.store.s3.prefix, "tags": rows,
                          "objects": len(found.objects), "total_bytes": found.total,
                          "unfinished_uploads": len(found.uploads), "last_collected": found.collected or None},
                         indent=2))  # fmt: skip
        return 0
    print(f"{_where(config)}: {len(rows)} tag record(s), {len(found.objects)} object(s), {human(found.total)} "
          f"stored, {len(found.uploads)} unfinished upload(s), "
          + (f"last collected {_ago(found.collected)}" if found.collected else "never collected"))  # fmt: skip
    print_tags(rows)
    return 0


def run_gc(args: argparse.Namespace, config: Config) -> int:
    s3 = config.store.s3
    try:
        budget = parse_size(args.max_size) if args.max_size else s3.max_size
        max_age = parse_duration(args.max_age) if args.max_age else s3.max_age
        abort_after = parse_duration(args.abort_uploads_after) if args.abort_uploads_after else s3.abort_uploads_after
    except ValueError as exc:
        return fail("cache gc", str(exc))

    async def collect(collector: Collector) -> Collection | None:
        lease = await collector.leases.acquire_collection()
        if lease is None:
            return None
        try:
            return await collector.collect(budget, max_age, abort_after, dry_run=args.dry_run)
        finally:
            await lease.release(stored=True)

    try:
        result = _on_bucket(config, collect)
    except StoreUnavailable as exc:
        return fail("cache gc", f"{_where(config)}: {exc}")
    if result is None:
        return fail("cache gc", f"{_where(config)}: another collection is running (a replica's, or another "
                    f"`cache gc`: the lease {s3.prefix}leases/gc); try again later", code=1)  # fmt: skip
    if args.json:
        print(json.dumps({"bucket": s3.bucket, **result.to_json()}, indent=2))
        return 0
    limits = [f"budget {human(budget)}" if budget else "no budget",
              f"max age {max_age / 86400:g}d" if max_age else "no age limit"]  # fmt: skip
    verb = "would remove" if result.dry_run else "removed"
    print(f"{_where(config)}: {', '.join(limits)}" + (" (dry run: nothing changed)" if result.dry_run else ""))
    print_table([("STORED BEFORE", verb.upper(), "FREED", "STORED AFTER", "TAG RECORDS DROPPED", "UPLOADS ABORTED"),
           (human(result.before), f"{len(result.content)} object(s)", human(result.freed), human(result.after),
            str(len(result.records)), str(len(result.uploads)))])  # fmt: skip
    for record in result.records:
        print(f"{'would drop' if result.dry_run else 'dropped'} {record.image} "
              "(its content goes; the next pull fetches it again)")  # fmt: skip
    for entry in result.content:
        print(f"{verb} {entry.digest} {human(entry.size)} last used {_ago(entry.last_used)}")
    return 0


def _ago(when: float) -> str:
    return f"{max(0, round(time.time() - when))}s ago"


def run_rm(args: argparse.Namespace, config: Config, wanted: Callable[[TagRecord], bool]) -> int:
    try:
        records, gone, freed = _on_bucket(config, lambda c: c.remove(wanted, dry_run=args.dry_run))
    except StoreUnavailable as exc:
        return fail("cache rm", f"{_where(config)}: {exc}")
    if not records:
        return fail("cache rm", f"nothing cached for {args.image} in {_where(config)}")
    names = sorted({r.image for r in records})
    if args.json:
        print(json.dumps({"bucket": config.store.s3.bucket, "dry_run": args.dry_run, "tags_removed": names,
                          "objects_removed": len(gone), "freed_bytes": freed}, indent=2))  # fmt: skip
        return 0
    print(f"{_where(config)}:" + (" (dry run: nothing changed)" if args.dry_run else ""))
    print_table(
        [("TAG RECORDS REMOVED", "OBJECTS REMOVED", "FREED"), (str(len(records)), str(len(gone)), human(freed))]
    )
    for name in names:
        print(f"{'would remove' if args.dry_run else 'removed'} {name}")
    return 0


def image_matcher(text: str, config: Config | None = None) -> Callable[[TagRecord], bool]:
    """``cache rm``'s selection, named as ``serve`` routes a pull of ``localhost:5000/<text>``
    with ``config`` (its default upstream, its prefixes and aliases); also ``registry/repo`` as
    parsed, or ``<upstream name>/<repo>``; a name without a registry matches that repository of
    any upstream (a cache directory alone does not say which upstream was the default).  All tags,
    or the one named.  ``PlatproxyError`` for a malformed reference."""
    ref = ImageRef.parse(text)
    tag_given = ":" in text.rpartition("/")[2]
    names = {(ref.registry, ref.name)}
    first, _, rest = ref.name.partition("/")
    if rest:
        names.add((first, rest))
    if config is not None:
        routed = route(ref.typed or f"{ref.registry}/{ref.name}", None, config)
        names.add((routed.upstream.name, routed.repo))
    repos = {ref.name, ref.typed} if not ref.explicit else set()

    def wanted(r: TagRecord) -> bool:
        return ((r.upstream, r.repo) in names or r.repo in repos) and (not tag_given or r.tag == ref.reference)

    return wanted
