"""``platproxy cache ls | gc | rm IMAGE | nodes``: inspect and trim the cache directly, and list the
nodes that registered their platform.

They work on the directory (``--cache-dir``, or the config's) and are safe beside a running
server: SQLite serializes the writes, and a file removed while it is being sent stays readable
for that send.  Temporary files younger than a day are left alone (a running fill owns them).
With a bucket-backed config (``[store] backend = "s3"``) they work on the bucket every replica
shares instead (``proxy.cli.bucketcache``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.cli import bucketcache
from proxy.cli.common import fail, subcommand
from proxy.cli.tables import print_table, print_tags, tag_row
from proxy.config import Config, ConfigError, load_config, parse_size
from proxy.errors import PlatproxyError, StoreUnavailable
from proxy.oci.descriptors import references
from proxy.sizes import human
from proxy.storage.budget import Evictor, choose_victims, needed_by
from proxy.storage.factory import NoCache, node_registrations, open_cache_directory
from proxy.storage.records import ContentEntry, TagRecord

if TYPE_CHECKING:  # the types only: the factory opens the cache directory
    from proxy.storage.files import FileStore
    from proxy.storage.tagindex import TagIndex

DESCRIPTION = "Inspect and trim the cache directory directly (safe beside a running server)."

TMP_GRACE = 86400.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _where(parser, None)
    sub = parser.add_subparsers(dest="cache_command", required=True)
    ls = subcommand(sub, "ls", "cached tags: what each resolved to, its rank label and size")
    ls.set_defaults(action=run_ls)
    gc = subcommand(sub, "gc", "drop stale temporary files, reconcile, evict down to the budget")
    gc.add_argument("--max-size", help="budget to evict down to (default: cache.max_size, or store.s3.max_size)")
    gc.add_argument("--max-age", help="bucket: also remove content not pulled for this long "
                    "(default: store.s3.max_age)")  # fmt: skip
    gc.add_argument("--abort-uploads-after", help="bucket: abort unfinished uploads older than this "
                    "(default: store.s3.abort_uploads_after, 1d)")  # fmt: skip
    gc.set_defaults(action=run_gc)
    rm = subcommand(sub, "rm", "forget IMAGE (all its tags, or the one named) and content nothing else uses")
    rm.add_argument("image", help="e.g. alpine, alpine:3.20, ghcr.io/o/r:tag")
    rm.set_defaults(action=run_rm)
    nodes = subcommand(sub, "nodes", "nodes that registered their platform (node setup), and until when")
    nodes.set_defaults(action=run_nodes)
    for command in (gc, rm):
        command.add_argument("--dry-run", action="store_true", help="print what would go and how much; change nothing")
    for command in (ls, gc, rm, nodes):  # the options go before or after the subcommand, as in serve
        _where(command, argparse.SUPPRESS)
        command.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                             help="print JSON for scripts instead of a table")  # fmt: skip
    parser.set_defaults(json=False)


def _where(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument("--config", type=Path, default=default, help="TOML config (for cache.dir and cache.max_size)")
    parser.add_argument("--cache-dir", default=default, help="the cache directory (overrides the config)")


def _config(args: argparse.Namespace) -> Config:
    overrides = {"cache.dir": args.cache_dir} if args.cache_dir else {}
    return load_config(args.config, overrides)


def _on_bucket(args: argparse.Namespace) -> Config | None:
    """The config when it keeps content in a bucket (the commands then work on the bucket)."""
    config = _config(args)
    if config.store.backend == "s3" and args.cache_dir:
        raise ConfigError("--cache-dir names a cache directory, but this configuration keeps content in the "
                          f"bucket {config.store.s3.bucket!r}: the command works on the bucket "
                          "(drop --cache-dir)")  # fmt: skip
    return config if config.store.backend == "s3" else None


def _open(args: argparse.Namespace) -> tuple[Path, FileStore, TagIndex, int]:
    config = _config(args)
    try:
        root, store, index = open_cache_directory(config)
    except NoCache as exc:
        raise ConfigError(str(exc)) from None
    return root, store, index, config.cache.max_size


def run_ls(args: argparse.Namespace) -> int:
    try:
        if (shared := _on_bucket(args)) is not None:
            return bucketcache.run_ls(args, shared)
        root, store, tags, _ = _open(args)
    except ConfigError as exc:
        return _fail("ls", str(exc))
    now = time.time()
    rows: list[dict[str, Any]] = []
    for r in tags.all_tags():
        size, complete = _image_size(store, r)
        rows.append(tag_row(r, size, complete, now))
    if args.json:
        print(json.dumps({"cache": str(root), "tags": rows}, indent=2))
        return 0
    print(f"cache {root}: {len(rows)} tag record(s), {human(tags.content_total())} stored")
    print_tags(rows)
    return 0


def _image_size(store: FileStore, record: TagRecord) -> tuple[int, bool]:
    """The bytes of the image a tag answers with (manifest, config, layers) held here, and whether
    all of them are."""
    data = store.read(record.digest, touch=False)
    digests = {record.digest, *(references(data) if data is not None else ())}
    sizes = [store.size(d) for d in digests]
    return sum(s or 0 for s in sizes), data is not None and None not in sizes


def run_gc(args: argparse.Namespace) -> int:
    try:
        if (shared := _on_bucket(args)) is not None:
            return bucketcache.run_gc(args, shared)
        root, store, tags, budget = _open(args)
    except ConfigError as exc:
        return _fail("gc", str(exc))
    for flag in ("max_age", "abort_uploads_after"):
        if getattr(args, flag):
            return _fail("gc", f"--{flag.replace('_', '-')} applies to a bucket ([store] backend = \"s3\"); "
                         "a cache directory is kept within --max-size / cache.max_size")  # fmt: skip
    if args.max_size:
        try:
            budget = parse_size(args.max_size)
        except ValueError as exc:
            return _fail("gc", f"--max-size {args.max_size}: {exc}")
    stale = [f for f in store.tmp.iterdir() if time.time() - f.stat().st_mtime > TMP_GRACE]
    removed_tmp = len(stale)
    evictor = Evictor(store, tags, budget, busy=set, unreachable=set)
    if args.dry_run:
        victims = choose_victims(tags.content_entries(), budget, set()) if budget else []
        return _gc_dry_run(args, root, budget, victims, removed_tmp)
    for leftover in stale:
        leftover.unlink(missing_ok=True)
    evictor.reconcile()
    victims = evictor.run() if budget else []
    freed = sum(v.size for v in victims)
    result = {"cache": str(root), "budget_bytes": budget, "temporary_files_removed": removed_tmp,
              "evicted": len(victims), "evicted_bytes": freed, "total_bytes": evictor.total,
              "tags_dropped": [r.image for r in evictor.dropped]}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"cache {root}: budget {human(budget) if budget else 'none (no eviction)'}")
    print_table([("EVICTED", "FREED", "NOW STORED", "TEMPORARY FILES REMOVED", "TAG RECORDS DROPPED"),
                  (str(len(victims)), human(freed), human(evictor.total), str(removed_tmp),
                   str(len(evictor.dropped)))])  # fmt: skip
    for record in evictor.dropped:
        print(f"dropped {record.image} (its content was evicted; the next pull fetches it again)")
    return 0


def _gc_dry_run(args: argparse.Namespace, root: Path, budget: int, victims: list[ContentEntry], tmp: int) -> int:
    freed = sum(v.size for v in victims)
    if args.json:
        print(json.dumps({"cache": str(root), "dry_run": True, "budget_bytes": budget, "would_evict": len(victims),
                          "would_free_bytes": freed, "temporary_files": tmp,
                          "digests": [v.digest for v in victims]}, indent=2))  # fmt: skip
        return 0
    print(f"cache {root}: budget {human(budget) if budget else 'none (no eviction)'} (dry run: nothing changed)")
    print_table([("WOULD EVICT", "WOULD FREE", "TEMPORARY FILES"), (str(len(victims)), human(freed), str(tmp))])
    for v in victims:
        print(f"would evict {v.digest} {human(v.size)}")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    try:
        wanted = bucketcache.image_matcher(args.image, _config(args))
        if (shared := _on_bucket(args)) is not None:
            return bucketcache.run_rm(args, shared, wanted)
        root, store, tags, _ = _open(args)
    except ConfigError as exc:
        return _fail("rm", str(exc))
    except PlatproxyError as exc:
        return _fail("rm", f"bad image reference {args.image!r}: {exc.message}")
    doomed = [r for r in tags.all_tags() if wanted(r)]
    if not doomed:
        return _fail("rm", f"nothing cached for {args.image} in {root}")
    keep = needed_by(store, tags, [r for r in tags.all_tags() if r not in doomed])
    gone = needed_by(store, tags, doomed) - keep
    freed = sum(store.size(d) or 0 for d in gone)
    if args.dry_run:
        print(json.dumps({"cache": str(root), "dry_run": True, "tags_removed": sorted({r.image for r in doomed}),
                          "files_removed": len(gone), "freed_bytes": freed}, indent=2) if args.json else
              f"cache {root} (dry run: nothing changed): would remove {len(doomed)} tag record(s) and "
              f"{len(gone)} file(s), {human(freed)}")  # fmt: skip
        return 0
    tags.delete_tags(doomed)
    for digest in gone:
        store.remove(digest)
    tags.forget_evicted(sorted(gone))
    names = sorted({r.image for r in doomed})
    if args.json:
        print(json.dumps({"cache": str(root), "tags_removed": names, "files_removed": len(gone), "freed_bytes": freed},
                         indent=2))  # fmt: skip
        return 0
    print(f"cache {root}:")
    print_table([("TAG RECORDS REMOVED", "FILES REMOVED", "FREED"), (str(len(doomed)), str(len(gone)), human(freed))])
    for name in names:
        print(f"removed {name}")
    return 0


def run_nodes(args: argparse.Namespace) -> int:
    try:
        records = node_registrations(_config(args))
    except (ConfigError, NoCache, StoreUnavailable) as exc:
        return _fail("nodes", str(exc))
    now = time.time()
    rows = [{**vars(r), "expired": not r.live(now)} for r in records]
    if args.json:
        print(json.dumps({"nodes": rows}, indent=2))
        return 0
    print(f"{sum(not r['expired'] for r in rows)} node(s) registered")
    if rows:
        print_table([("ADDRESS", "PLATFORM", "RUNTIME", "REGISTERED", "EXPIRES")] + [
            (r.address, r.platform, r.runtime, time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.registered_at)),
             "expired" if not r.live(now) else time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.expires_at)))
            for r in records])  # fmt: skip
    return 0


def _fail(command: str, message: str) -> int:
    return fail(f"cache {command}", message)


def run(args: argparse.Namespace) -> int:
    code: int = args.action(args)
    return code
