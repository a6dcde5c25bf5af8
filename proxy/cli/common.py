"""What several subcommands share: bad input as one line, image references, the host to resolve for."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostinfo import HostProfile, PlatformError
from hostinfo.cli import add_capability_arguments
from hostinfo.probe import host_profile
from proxy.config import file_key
from proxy.errors import PlatproxyError
from proxy.oci.names import ImageRef

if TYPE_CHECKING:
    from proxy.config import Config
    from proxy.pull.targets import Target
    from proxy.registry.client import Upstream


class UsageError(ValueError):
    """Bad input given on the command line; printed as one line, exit 2."""


def subcommand(subparsers: Any, name: str, text: str) -> argparse.ArgumentParser:
    """A sub-subcommand (``cache ls``) whose one line is both its help and its description."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=text, description=text)
    return parser


def fail(command: str, message: str, code: int = 2) -> int:
    print(f"platproxy {command}: {message}", file=sys.stderr)
    return code


def image_ref(text: str) -> ImageRef:
    try:
        return ImageRef.parse(text)
    except PlatproxyError as exc:
        raise UsageError(f"bad image reference {text!r}: {exc.message}") from None


def add_host_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--platform", default="",
                        help="resolve for this platform instead of this host (e.g. linux/arm/v7)")  # fmt: skip
    parser.add_argument("--features", default="", help="CPU features of the --platform host, comma-separated")
    add_capability_arguments(parser)


def host_from_args(args: argparse.Namespace) -> HostProfile:
    features = tuple(f.strip() for f in args.features.split(",") if f.strip())
    if features and not args.platform:
        raise UsageError("--features goes with --platform (the detected host has its own)")
    try:
        return host_profile(args.platform, features, args.ia32, args.aarch32, args.emulation, args.binfmt_dir)
    except PlatformError as exc:
        raise UsageError(f"bad --platform: {exc}") from None


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """A client of a central mirror, described as the mirror sees it (``resolve``, ``platforms``)."""
    parser.add_argument("--user-agent", default="",
                        help="answer as a central mirror would for a client sending this User-Agent")  # fmt: skip
    parser.add_argument("--client-ip", default="", help="... and connecting from this address ([[clients]] rules)")
    parser.add_argument("--config", type=Path, help="TOML config: the upstreams a name routes to (their URLs and "
                        "credentials, as serve routes a pull), [[clients]] rules, [resolve]")  # fmt: skip


def upstream_for(ref: ImageRef, config_path: Path | None) -> tuple[Upstream, str]:
    """The upstream and repository a pull of ``ref`` reaches: with a config, exactly as ``serve``
    routes ``localhost:5000/<ref>`` (the default upstream, prefixes and aliases, with the config's
    URL, credentials, CA and proxy); a reference naming a registry the config does not mirror, or
    no config, goes to that registry itself."""
    from proxy.config import ConfigError, load_config
    from proxy.pull.route import route, upstream_named
    from proxy.registry.client import Upstream
    from proxy.registry.source import upstream_for_registry

    if config_path is None:
        return upstream_for_registry(ref.registry), ref.name
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if ref.explicit and upstream_named(config, ref.registry) is None:
        return upstream_for_registry(ref.registry), ref.name
    try:
        routed = route(ref.typed or f"{ref.registry}/{ref.name}", None, config)
    except PlatproxyError as exc:
        raise UsageError(f"{ref.typed or ref.name}: {exc.message}") from None
    return Upstream(routed.upstream, config.limits), routed.repo


def client_target(args: argparse.Namespace, host: HostProfile | None = None) -> Target:
    """What a central mirror resolves for the client ``args`` describe: a rule, an index tool, its
    User-Agent's platform, or the host (``host``, else the config's, else this machine)."""
    from proxy.config import ConfigError, load_config  # only for this form: the plain one starts faster
    from proxy.pull.targets import Targets

    try:
        config = load_config(args.config)
        return Targets(config, host or config.platform.profile()).for_request(
            args.client_ip, "", args.user_agent, accepts_index=True
        )
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def origin_lines(origins: dict[str, str]) -> list[str]:
    """One line per value that came from the environment or a flag rather than the file."""
    return [f"{file_key(key)} from {source}" for key, source in sorted(origins.items())]


def file_problem(config: Config) -> str:
    """What is wrong with the files the config names (the cache directory, htpasswd, TLS pair,
    upstream CAs) or otherwise stops it from serving (a peer listener without its secret), as one
    ``config key …`` line, or ``""``: ``serve`` and ``config check`` refuse the same things."""
    from proxy.http.auth import Htpasswd, HtpasswdError  # only for these two commands
    from proxy.http.tls import TlsError, check_files
    from proxy.storage.factory import cache_dir_problem

    problem = cache_dir_problem(config.cache.path())
    if problem:
        return f"config key {file_key('cache.dir')}: {problem}"
    if config.store.backend == "s3" and (problem := config.store.s3.serving_problem()):
        return f"config key {file_key('store.s3.peer_secret')}: {problem}"
    try:
        if config.auth.htpasswd:
            Htpasswd(Path(config.auth.htpasswd))
        check_files(config)
    except HtpasswdError as exc:
        return f"config key {file_key('auth.htpasswd')}: {exc}"
    except TlsError as exc:
        return f"config key {exc}"
    return ""
