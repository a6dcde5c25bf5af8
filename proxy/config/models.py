"""The sections of the file, and ``Config``, the whole of it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from hostinfo import HostProfile
from hostinfo.probe import host_profile
from proxy.config.store import StoreConfig
from proxy.config.upstream import UpstreamConfig
from proxy.config.values import (
    Duration,
    Interval,
    Limit,
    Section,
    Size,
    check_platform,
    host_port,
    is_loopback,
    network,
)
from proxy.oci.names import DOCKER_HUB, DOCKER_HUB_URL
from proxy.sizes import MAX_MANIFEST_SIZE

Capability = Literal["auto", "yes", "no"]
"""Whether a host runs 386 (``ia32``) or 32-bit arm (``aarch32``) code: detected, or told."""


class PlatformConfig(Section):
    override: str = ""
    features: tuple[str, ...] = ()
    ia32: Capability = "auto"
    aarch32: Capability = "auto"
    emulation: Literal["off", "fallback"] = "off"
    """``fallback``: platforms usable binfmt_misc (QEMU) handlers run rank after every native
    entry, labelled ``emulated``; off by default (never silently)."""
    binfmt_dir: str = ""
    """Read handlers from here instead of /proc/sys/fs/binfmt_misc (tests, what-if)."""

    @field_validator("override")
    @classmethod
    def _platform(cls, value: str) -> str:
        if value:
            check_platform(value)  # PlatformError is a ValueError: reported with the key
        return value

    def profile(self) -> HostProfile:
        """The host to resolve for: this one as detected, or the override, with these capabilities."""
        return host_profile(self.override, self.features, self.ia32, self.aarch32, self.emulation, self.binfmt_dir)


class CacheConfig(Section):
    dir: str = ""
    """Empty: ``$CACHE_DIRECTORY`` (systemd's ``CacheDirectory=``), else
    ``$XDG_CACHE_HOME/platproxy`` (``~/.cache/platproxy``): defaults that a file's ``dir`` beats."""
    tag_ttl: Duration = 300.0
    """A cached tag younger than this is served without asking the upstream."""
    serve_stale_on_not_found: bool = True
    """When the upstream answers 404 for a cached tag, keep serving the cached content."""
    max_size: Size = 0
    """Disk budget for cached content (e.g. "20GiB"); 0: unlimited. Least recently used goes first."""

    def path(self) -> Path:
        if self.dir:
            return Path(self.dir).expanduser()
        systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
        if systemd:
            return Path(systemd)
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "platproxy"


INDEX_TOOLS = ("cosign", "notation", "crane", "go-containerregistry", "regclient", "regctl", "oras",
               "buildkit", "buildx")  # fmt: skip
"""Tools that need the index (trow#77, harbor#15591, buildx#1389).  Not skopeo: its requests are
the same for ``copy --all`` and a one-platform pull, and the pull is the common case; ``copy
--all`` names the ``platform.all`` selector instead (or a site adds ``skopeo`` here)."""


class ResolveConfig(Section):
    list_aware_clients: Literal["resolve", "index"] = "resolve"
    """What a client that accepts list/index types gets for a tag: the resolved manifest
    (the default, resolution is the point) or the index itself."""
    user_agent: bool = True
    """Resolve for the platform a Docker engine names in its ``User-Agent`` (``os/linux arch/arm64``)
    when no ``[[clients]]`` rule matches; off: every such client gets this host's platform."""
    default_variants: dict[str, str] = {"arm": "v7", "arm64": "v8", "amd64": "v1"}  # noqa: RUF012 (pydantic copies it)
    """The variant assumed for an architecture a ``User-Agent`` names (it names none) when it is
    not this host's; this host's own architecture always gets the detected profile."""
    trusted_proxies: tuple[str, ...] = ()
    """CIDRs of load balancers whose ``X-Forwarded-For`` names the client; empty: never believed."""
    host_addresses: tuple[str, ...] = ()
    """CIDRs whose clients are this host (a sidecar's engine): resolved for this host's own
    profile.  Empty: loopback and the machine's own interface addresses.  A client from anywhere
    else is a remote node, never resolved for this host's platform by guess: it is placed by the
    node header, a ``[[clients]]`` rule, its ``User-Agent`` or a selector, or else gets the index
    when its ``Accept`` takes one (it chooses, as without a mirror)."""
    unknown_list_blind: Literal["host", "refuse"] = "host"
    """A remote client nothing places and that cannot read an index (an old engine): ``host``
    resolves for this host, logged and counted as a guess; ``refuse`` answers 404 saying why."""
    node_registration: bool = True
    """Take node registrations (``platproxy node setup`` for Docker and podman nodes, whose requests
    cannot carry the node header): requests from a registered address resolve for the platform
    it registered, after ``[[clients]]`` rules.  A node registers only its own address."""
    registration_ttl: Duration = 30 * 86400.0
    """How long a registration places a node unless renewed (``node setup`` or ``node check``)."""
    child_proxies: tuple[str, ...] = ()
    """CIDRs of child platproxies (``parent = true`` upstreams pointing here) whose
    ``X-Platproxy-Resolve: none`` is honoured: they get tags unresolved, the index as published.
    A client let in by ``[auth] htpasswd`` counts too.  Anyone else's header is ignored."""
    index_tools: tuple[str, ...] = INDEX_TOOLS
    """``User-Agent`` products that work on the index as published (signature checks, copies,
    builds for other platforms): their tag requests get the index when their ``Accept`` takes it."""

    @field_validator("index_tools")
    @classmethod
    def _tools(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                raise ValueError(f"{name!r} is not a User-Agent product name (such as cosign or buildkit)")
        return value

    @field_validator("default_variants")
    @classmethod
    def _variants(cls, value: dict[str, str]) -> dict[str, str]:
        for arch, variant in value.items():
            check_platform(f"linux/{arch}/{variant}")
        return value

    @field_validator("trusted_proxies", "child_proxies", "host_addresses")
    @classmethod
    def _proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            network(cidr)
        return value


class ClientRule(Section):
    """``[[clients]]``: the platform to resolve for, for clients from these addresses."""

    cidr: str
    platform: str
    features: tuple[str, ...] = ()
    ia32: Capability = "no"
    aarch32: Capability = "no"
    """A rule describes machines platproxy cannot probe: no cross-architecture fallback unless told."""

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return str(network(value))

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str) -> str:
        check_platform(value)
        return value


class PolicyRule(Section):
    """``[[policy]]``: what the mirror may fetch and serve, by upstream, repository and tag
    (shell-style globs: ``*``, ``?``, ``[abc]``; ``*`` matches across ``/`` too)."""

    action: Literal["allow", "deny"]
    upstream: str = "*"
    """The upstream's name, as in ``[[upstream]] name``."""
    repository: str = "*"
    """The repository at that upstream (``library/*``, ``team-a/**``)."""
    tag: str = "*"
    """Tags only: a rule naming tags does not judge pulls by digest unless it allows (a digest
    cannot be traced to a tag, and an allowed tag's content is pulled by digest)."""

    def describe(self) -> str:
        return f"{self.action} {self.upstream}/{self.repository}:{self.tag}"


class CompatConfig(Section):
    """Conversions for engines that cannot read what the upstream holds (the old-engines table)."""

    schema2: bool = True
    """OCI manifests become Docker schema 2 for clients that read schema 2 but not OCI
    (Docker 1.10-18.03, 19.03.0-19.03.4); off: those clients get an explained 404."""
    schema1: bool = True
    """Signed schema 1 for clients that read neither (Docker 1.6-1.9, ``Accept``-less clients)."""
    signing_key: str = ""
    """PEM file of the P-256 key that signs schema 1 manifests; empty: ``schema1-signing-key.pem``
    in the cache directory, made (mode 0600) on first start and kept, so signatures stay stable."""
    zstd: Literal["refuse", "serve"] = "refuse"
    """For a client that cannot unpack zstd (Docker < 23, containerd < 1.5) and an image whose
    only form is zstd: an explained 404 (``refuse``), or the manifest as it is (``serve``)."""


class MetricsConfig(Section):
    listen: str = ""
    """Serve /metrics, /healthz and /readyz on this HOST:PORT instead of the main port; empty: main port."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return host_port(value) if value else value


class AuthConfig(Section):
    htpasswd: str = ""
    """An htpasswd file of bcrypt hashes; empty: no client authentication (sidecars on loopback)."""
    realm: str = "platproxy"
    allow_plain_http: bool = False
    """Accept passwords over plain HTTP on a non-loopback listen address (never the default:
    configure ``[tls]``, or terminate TLS in front and set this)."""


class TlsConfig(Section):
    """TLS on the client listener (``[metrics] listen`` stays plain: keep it internal)."""

    cert: str = ""
    """PEM: the server certificate followed by its chain."""
    key: str = ""
    """PEM: its private key."""
    client_ca: str = ""
    """PEM CA bundle: when set, clients must present a certificate it signed (mutual TLS)."""
    reload_interval: Interval = 30.0
    """How often the files are checked for a rotation (new connections then get the new pair)."""

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if bool(self.cert) != bool(self.key):
            raise ValueError("tls.cert and tls.key go together: set both or neither")
        if self.client_ca and not self.cert:
            raise ValueError("tls.client_ca needs tls.cert and tls.key")
        return self


class LimitsConfig(Section):
    max_manifest_size: Limit = MAX_MANIFEST_SIZE
    connect_timeout: Interval = 10.0
    read_timeout: Interval = 60.0
    """Longest wait for the next bytes from an upstream."""
    header_timeout: Interval = 30.0
    """Longest a client may take to send a request's headers (slowloris protection), and to
    finish its TLS handshake."""
    idle_timeout: Interval = 75.0
    """How long an idle client connection is kept open (aiohttp's default is an hour)."""
    max_upstream_fetches: int = Field(default=32, ge=1, le=10000)
    """Requests in flight to one upstream at once (a blob counts until its body is read)."""
    max_blob_size: Limit = 64 * 2**30
    """Most bytes a blob fill takes when no manifest gave the blob's size (with one, that size)."""
    min_fill_rate: Size = 8 * 1024
    """Bytes per second an upstream must send a blob at, over every ``read_timeout`` window; a fill
    slower than that (a trickle that keeps each read under ``read_timeout``) is cut.  0: no floor."""
    max_header_line: int = Field(default=8190, ge=1024, le=65536)
    """Longest request line or header line a client may send, before any authentication (nginx's
    default buffer is 8 KiB; registry clients' longest header is a token of a few KiB)."""
    max_headers: int = Field(default=64, ge=16, le=1024)
    """Most header lines in one request (registry clients send about ten)."""
    max_partial_per_client: int = Field(default=32, ge=1, le=100000)
    """Connections one client address may hold with a request's headers begun and unfinished."""


class Config(Section):
    listen: str = "127.0.0.1:5000"
    loop: Literal["auto", "uvloop", "asyncio"] = "asyncio"
    """The event loop: ``asyncio`` (the default) is the standard loop; ``uvloop`` runs libuv's
    (installed with platproxy where it ships wheels); ``auto`` takes uvloop where it is installed.
    Measured here, uvloop serves a fill's own clients faster, but a tier's waiting replicas then
    lag the holder's clients by up to 1.5x, and tag rates are level under both (TLS is encrypted
    on relay threads whatever the loop); so the standard loop stays the default until that is
    understood."""
    upstreams: tuple[UpstreamConfig, ...] = (UpstreamConfig(name=DOCKER_HUB, url=DOCKER_HUB_URL),)
    default_upstream: str = ""
    """Name of the upstream for names without a known prefix or ``ns``; empty: the first."""
    platform: PlatformConfig = PlatformConfig()
    cache: CacheConfig = CacheConfig()
    resolve: ResolveConfig = ResolveConfig()
    compat: CompatConfig = CompatConfig()
    clients: tuple[ClientRule, ...] = ()
    """``[[clients]]`` rules, first match wins: whose platform a request is resolved for."""
    policy: tuple[PolicyRule, ...] = ()
    """``[[policy]]`` rules, first match wins; none matching: allowed, unless some rule allows
    (then the rules are an allow list and the rest is denied)."""
    limits: LimitsConfig = LimitsConfig()
    metrics: MetricsConfig = MetricsConfig()
    auth: AuthConfig = AuthConfig()
    tls: TlsConfig = TlsConfig()
    store: StoreConfig = StoreConfig()

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return host_port(value)

    @model_validator(mode="after")
    def _upstreams(self) -> Config:
        if not self.upstreams:
            raise ValueError("at least one upstream is needed")
        names = [n for u in self.upstreams for n in u.names]
        if len(names) != len(set(names)):
            raise ValueError("two upstreams share a name or alias")
        if self.default_upstream and self.default_upstream not in {u.name for u in self.upstreams}:
            raise ValueError(f"default_upstream {self.default_upstream!r} is not the name of an upstream")
        return self

    @model_validator(mode="after")
    def _no_passwords_in_clear(self) -> Config:
        passthrough = [u.name for u in self.upstreams if u.auth == "passthrough"]
        if self.auth.htpasswd and passthrough:
            raise ValueError(
                f'auth.htpasswd and auth = "passthrough" (upstream {passthrough[0]}) both need the client\'s '
                "Authorization header: a client can send only one; choose one of them"
            )
        what = "auth.htpasswd" if self.auth.htpasswd else ""
        if passthrough:
            what = f"upstream {passthrough[0]} (auth = passthrough)"
        clear = what and not self.tls.cert and not self.auth.allow_plain_http
        if clear and not is_loopback(self.listen_host):
            raise ValueError(
                f"{what} on {self.listen} without [tls] would take passwords in clear over the "
                "network: set tls.cert and tls.key, or auth.allow_plain_http = true when TLS ends in front"
            )
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls.cert else "http"

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])
