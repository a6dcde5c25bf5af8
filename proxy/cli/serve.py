"""``platproxy serve``: run the mirror.

With no arguments it listens on 127.0.0.1:5000, proxies Docker Hub and caches under the user's
cache directory.  ``--listen``, ``--upstream``, ``--cache-dir`` and ``--platform`` override the
config file; a bad value is one readable line and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from proxy.cli.common import fail, file_problem, origin_lines
from proxy.config import Config, ConfigError, file_key, load_config, upstream_from_url
from proxy.http.app import StartError, serve
from proxy.logs import configure_logging
from proxy.loops import LoopMissing, chosen_loop
from proxy.pull.signing import SigningKey, SigningKeyError
from proxy.storage.factory import backend_problem

DESCRIPTION = (
    "Run the registry mirror. With no options it listens on 127.0.0.1:5000, mirrors Docker Hub and caches "
    "under the user's cache directory; options override the config file."
)


def store_line(config: Config) -> str:
    """Where content is kept, as the banner says it."""
    if config.store.backend != "s3":
        return f"cache {config.cache.path()}"
    s3 = config.store.s3
    peers = f", peers on {s3.peer_listen} as {s3.advertised_peer()}" if s3.peer_listen else ""
    return (f"store s3 {s3.endpoint or 'AWS'} bucket {s3.bucket} prefix {s3.prefix or '(none)'}, "
            f"local cache {config.cache.path()}{peers}")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (see config.example.toml)")
    parser.add_argument("--listen", help="HOST:PORT to listen on (default 127.0.0.1:5000)")
    parser.add_argument("--upstream", action="append", metavar="URL",
                        help="upstream registry URL; repeat for several (the first is the default)")  # fmt: skip
    parser.add_argument("--cache-dir", help="where to keep the cache")
    parser.add_argument("--platform", help="resolve for this platform instead of this host (e.g. linux/arm/v7)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="the least severe log lines written (default info; debug adds each ranking)",
    )


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if args.listen:
        overrides["listen"] = args.listen
    if args.cache_dir:
        overrides["cache.dir"] = args.cache_dir
    if args.platform:
        overrides["platform.override"] = args.platform
    try:
        if args.upstream:
            overrides["upstreams"] = [upstream_from_url(u).model_dump() for u in args.upstream]
            overrides["default_upstream"] = ""
        config = load_config(args.config, overrides, origins=origins)
        host = config.platform.profile()
    except ConfigError as exc:
        return fail("serve", str(exc))
    problem = file_problem(config)
    if problem:
        return fail("serve", problem)
    problem = backend_problem(config)
    if problem:
        return fail("serve", f"config key {file_key('store.backend')}: {problem}")
    if config.compat.schema1:  # made (or read) now: a bad key file is a start-up error, not a 500 later
        try:
            SigningKey(config)()
        except SigningKeyError as exc:
            return fail("serve", f"config key {file_key('compat.signing_key')}: {exc}")
    configure_logging(args.log_level)
    upstreams = ", ".join(f"{u.name}={u.url}" + (" (clients' own credentials)" if u.auth == "passthrough" else "")
                          for u in config.upstreams)  # fmt: skip
    try:
        loop_name, loop_factory, fallback = chosen_loop(config.loop)
    except LoopMissing as exc:
        return fail("serve", f"config key {file_key('loop')}: {exc}")
    banner = (
        f"platproxy: serving {config.scheme}://{config.listen} for {host.platform}, upstreams "
        f"{upstreams}, {store_line(config)}, event loop {loop_name}" + (f" ({fallback})" if fallback else "")
        + "".join(f"\nplatproxy: {line}" for line in origin_lines(origins))
    )  # fmt: skip
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(config, host, on_ready=lambda: print(banner, file=sys.stderr, flush=True)))
    except StartError as exc:
        return fail("serve", str(exc))
    return 0
