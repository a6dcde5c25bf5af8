"""Configuration: pydantic models, loaded from TOML, overridden by command-line flags.

Embedded defaults make ``platproxy serve`` useful with no file at all: listen on
127.0.0.1:5000, mirror Docker Hub, cache under the user's cache directory.  A bad value is one
readable message naming the key (``ConfigError``), never a traceback.

May import: hostinfo, proxy.oci, proxy.sizes.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hostinfo import HostProfile
from hostinfo.platform import Platform
from hostinfo.probe import host_profile
from hostinfo.validate import require_real
from proxy.oci.names import DOCKER_HUB, DOCKER_HUB_ALIASES, DOCKER_HUB_URL
from proxy.sizes import MAX_MANIFEST_SIZE

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$", re.IGNORECASE)
_N = TypeVar("_N", int, float)
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZES = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


class ConfigError(ValueError):
    """A configuration mistake; the message names the key and what was expected."""


def _duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value} is negative: a duration is 0 or more (30s, 5m, 1h or seconds)")
        return float(value)
    m = _DURATION.match(str(value).strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError("expected a duration such as 30s, 5m, 1h or a number of seconds")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value} is negative: a size is 0 or more (4MiB, 20GiB or bytes)")
        return value
    m = _SIZE.match(str(value).strip()) if isinstance(value, str) else None
    if m is None:
        raise ValueError("expected a size such as 4MiB, 20GiB or a number of bytes")
    return int(float(m.group(1)) * _SIZES[(m.group(2) or "b").lower()])


def _positive(value: _N) -> _N:
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
"""0 or more: 0 is meaningful where the key says so (``tag_ttl = 0``: always revalidate)."""
Size = Annotated[int, BeforeValidator(_size)]
"""0 or more: 0 is meaningful where the key says so (``max_size = 0``: no budget)."""
Interval = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]
"""A timeout or period: 0 would mean never waiting (or spinning), so it is refused."""
Limit = Annotated[int, BeforeValidator(_size), AfterValidator(_positive)]


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:5000")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class UpstreamConfig(_Model):
    """One upstream registry."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.:_\[\]-]+$")
    """The registry host clients name (``docker.io``, ``ghcr.io``): the path prefix and ``?ns=``."""
    url: str
    aliases: tuple[str, ...] = ()
    """Other names the same registry goes by in ``?ns=`` (e.g. ``index.docker.io``)."""
    username: str = ""
    password: str = Field(default="", repr=False)
    insecure_http: bool = False
    """Allow plain HTTP to a host that is not loopback (never the default)."""
    ca: str = ""
    """A PEM CA bundle trusted for this upstream, besides the system's (a tier with a private CA);
    verification itself is never turned off."""
    parent: bool = False
    """The URL is another mirror (a regional platproxy): requests name this registry with ``?ns=``,
    and tags are asked for unresolved, so that this proxy resolves them for its own host."""
    proxy: str = Field(default="", repr=False)
    """An HTTP(S) forward proxy to reach this upstream through (``http://proxy.corp:3128``), or
    ``env``: the ``HTTPS_PROXY``/``HTTP_PROXY`` and ``NO_PROXY`` of platproxy's environment;
    empty (the default): connect directly, whatever the environment says."""

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str) -> str:
        if value and value != "env":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
                raise ValueError("expected env or a proxy URL such as http://proxy.example:3128")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected an http:// or https:// URL with a host")
        path = parts.path.rstrip("/")
        if path or parts.query or parts.fragment:
            # Refused, not stripped: the registry API lives at /v2/ of the host, which platproxy
            # adds; with a path every pull would 404 on /v2/v2/... while the host still answers.
            drop = "/v2/: platproxy adds it" if path == "/v2" else "the path: the registry API is at the host's /v2/"
            raise ValueError(f"{value!r} has a path; give the registry's root ({parts.scheme}://{parts.netloc}) "
                             f"and drop {drop}")  # fmt: skip
        return value.rstrip("/")

    @model_validator(mode="after")
    def _plain_http_only_on_loopback(self) -> UpstreamConfig:
        parts = urlsplit(self.url)
        if parts.scheme == "http" and not is_loopback(parts.hostname or "") and not self.insecure_http:
            raise ValueError(f"plain http to {parts.hostname} is refused; use https or set insecure_http = true")
        if parts.scheme == "http" and self.proxy and self.username:
            raise ValueError("a proxy would see this upstream's credentials (plain http is forwarded in clear): "
                             "use https, where the proxy only carries an encrypted tunnel")  # fmt: skip
        return self

    @property
    def is_docker_hub(self) -> bool:
        return self.name in DOCKER_HUB_ALIASES

    @property
    def names(self) -> tuple[str, ...]:
        extra = DOCKER_HUB_ALIASES if self.is_docker_hub else ()
        return tuple(dict.fromkeys((self.name, *self.aliases, *extra)))


Capability = Literal["auto", "yes", "no"]
"""Whether a host runs 386 (``ia32``) or 32-bit arm (``aarch32``) code: detected, or told."""


class PlatformConfig(_Model):
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


class CacheConfig(_Model):
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


class ResolveConfig(_Model):
    list_aware_clients: Literal["resolve", "index"] = "resolve"
    """What a client that accepts list/index types gets for a tag: the resolved manifest
    (the default, resolution is the point) or the index itself."""
    user_agent: bool = True
    """Resolve for the platform a Docker engine names in its ``User-Agent`` (``os/linux arch/arm64``)
    when no ``[[clients]]`` rule matches; off: every such client gets this host's platform."""
    default_variants: dict[str, str] = {"arm": "v7", "arm64": "v8", "amd64": "v1"}
    """The variant assumed for an architecture a ``User-Agent`` names (it names none) when it is
    not this host's; this host's own architecture always gets the detected profile."""
    trusted_proxies: tuple[str, ...] = ()
    """CIDRs of load balancers whose ``X-Forwarded-For`` names the client; empty: never believed."""
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

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            _network(cidr)
        return value


class ClientRule(_Model):
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
        return str(_network(value))

    @field_validator("platform")
    @classmethod
    def _platform(cls, value: str) -> str:
        check_platform(value)
        return value


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an address or CIDR range such as 10.3.0.0/16") from None


def check_platform(value: str) -> Platform:
    """A platform an operator names (a rule, an override, a flag): parsed, normalized and real
    (``hostinfo.validate.require_real``; ``PlatformError`` is a ``ValueError``)."""
    return require_real(value)


class PolicyRule(_Model):
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


class CompatConfig(_Model):
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


class MetricsConfig(_Model):
    listen: str = ""
    """Serve /metrics, /healthz and /readyz on this HOST:PORT instead of the main port; empty: main port."""

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _host_port(value) if value else value


class AuthConfig(_Model):
    htpasswd: str = ""
    """An htpasswd file of bcrypt hashes; empty: no client authentication (sidecars on loopback)."""
    realm: str = "platproxy"
    allow_plain_http: bool = False
    """Accept passwords over plain HTTP on a non-loopback listen address (never the default:
    configure ``[tls]``, or terminate TLS in front and set this)."""


class TlsConfig(_Model):
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


class LimitsConfig(_Model):
    max_manifest_size: Limit = MAX_MANIFEST_SIZE
    connect_timeout: Interval = 10.0
    read_timeout: Interval = 60.0
    """Longest wait for the next bytes from an upstream."""
    header_timeout: Interval = 30.0
    """Longest a client may take to send a request's headers (slowloris protection)."""
    idle_timeout: Interval = 75.0
    """How long an idle client connection is kept open (aiohttp's default is an hour)."""
    max_upstream_fetches: int = Field(default=32, ge=1, le=10000)
    """Requests in flight to one upstream at once (a blob counts until its body is read)."""


class S3Config(_Model):
    """A bucket shared by every replica (``[store] backend = "s3"``)."""

    endpoint: str = ""
    """The S3 endpoint URL (``https://s3.eu-west-1.amazonaws.com``, a Ceph RGW); empty: AWS's default."""
    bucket: str = Field(default="", pattern=r"^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?$")
    prefix: str = Field(default="platproxy/", pattern=r"^([A-Za-z0-9._/-]*/)?$")
    """Every key platproxy writes starts with this (ends with ``/``)."""
    region: str = "us-east-1"
    addressing_style: Literal["path", "virtual", "auto"] = "path"
    """``path`` (endpoint/bucket/key: Ceph RGW, MinIO) or ``virtual`` (bucket.endpoint/key: AWS's preference)."""
    access_key: str = ""
    """Empty: botocore's usual chain (``AWS_ACCESS_KEY_ID``, profiles, instance roles)."""
    secret_key: str = Field(default="", repr=False)
    verify_tls: bool = True
    redirect: bool = False
    """Answer cached blob GETs with a 307 to a presigned URL (clients must reach the store)."""
    presign_ttl: Interval = 300.0
    lease_ttl: Interval = 30.0
    """A fill's lease lasts this long unless renewed; a replica that died blocks others at most this long."""
    poll_interval: Interval = 0.25
    """How often a replica waiting on another's fill looks for the finished blob (backing off to 8x)."""
    part_size: Size = 16 * 2**20
    """Multipart upload part size (S3's minimum is 5 MiB); smaller blobs go in one PUT."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("expected an http:// or https:// URL with a host")
            if parts.scheme == "http" and not is_loopback(parts.hostname):
                raise ValueError(f"plain http to {parts.hostname} is refused for the store; use https")
        return value.rstrip("/")

    @field_validator("part_size")
    @classmethod
    def _part_size(cls, value: int) -> int:
        if value < 5 * 2**20:
            raise ValueError("S3 multipart parts must be at least 5MiB")
        return value


class StoreConfig(_Model):
    backend: Literal["filesystem", "s3"] = "filesystem"
    """Where verified content lives: files in ``[cache] dir`` (a sidecar), or a bucket shared by replicas."""
    s3: S3Config = S3Config()

    @model_validator(mode="after")
    def _bucket(self) -> StoreConfig:
        if self.backend == "s3" and not self.s3.bucket:
            raise ValueError("backend s3 needs [store.s3] bucket")
        return self


class Config(_Model):
    listen: str = "127.0.0.1:5000"
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
        return _host_port(value)

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
        clear = self.auth.htpasswd and not self.tls.cert and not self.auth.allow_plain_http
        if clear and not is_loopback(self.listen_host):
            raise ValueError(
                f"auth.htpasswd on {self.listen} without [tls] would take passwords in clear over the "
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


ENV_PREFIX = "PLATPROXY_"
SECRET_KEYS = frozenset({"password", "secret_key"})


def load_config(
    path: Path | None = None,
    overrides: dict[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    origins: dict[str, str] | None = None,
) -> Config:
    """Defaults < the TOML file < ``PLATPROXY_*`` environment < ``overrides`` (flags).

    Environment keys use ``__`` between levels and list indexes as numbers:
    ``PLATPROXY_CACHE__TAG_TTL=1h``, ``PLATPROXY_UPSTREAMS__0__PASSWORD=...``; values are read
    as JSON when they parse as JSON (``true``, ``3``, ``["a"]``), else as strings.  ``origins``,
    when given, is filled with each dotted key set by the environment or a flag and its source
    (``config check`` and the start-up line show them: a variable in a unit file silently beating
    the file is the classic surprise).
    """
    data: dict[str, Any] = Config().model_dump(mode="json")
    origins = origins if origins is not None else {}
    file_data: dict[str, Any] = {}
    if path is not None:
        try:
            file_data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
        if "upstream" in file_data:
            file_data["upstreams"] = file_data.pop("upstream")
        data = _merge(data, file_data)
    for key, raw in sorted((env if env is not None else os.environ).items()):
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX):
            dotted = ".".join(key[len(ENV_PREFIX) :].lower().split("__"))
            _set(data, dotted, _env_value(raw), key)
            origins[dotted] = key + _over_the_file(file_data, dotted)
    for dotted, value in (overrides or {}).items():
        _set(data, dotted, value, f"--{dotted.rpartition('.')[2].replace('_', '-')}")
        origins[dotted] = "a command-line flag" + _over_the_file(file_data, dotted)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origins)) from None


def _over_the_file(file_data: dict[str, Any], dotted: str) -> str:
    value: Any = file_data
    for part in dotted.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return ""
    return f", over the file's {json.dumps(value)}"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _set(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    target: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(target, list):
            if not part.isdigit() or int(part) >= len(target):
                raise ConfigError(f"{source}: {'.'.join(parts[:i]) or dotted} has no entry {part}")
            if last:
                target[int(part)] = value
            else:
                target = target[int(part)]
        elif isinstance(target, dict):
            if last:
                target[part] = value
            else:
                target = target.setdefault(part, {})
        else:
            raise ConfigError(f"{source}: {'.'.join(parts[:i])} is not a table")


def _describe(exc: ValidationError, origins: dict[str, str] | None = None) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return _unknown_key(first["loc"], origins or {})
    origin = next((f" (from {src})" for k, src in (origins or {}).items() if key == k or key.startswith(k + ".")), "")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"config key {key}{origin}: {message}{more}"


def _unknown_key(loc: tuple[int | str, ...], origins: dict[str, str]) -> str:
    """``unknown key `foo` in [cache] (known: dir, tag_ttl, …)``: the section as the file spells it."""
    model: type[BaseModel] = Config
    section: list[str] = []
    for part in loc[:-1]:
        if isinstance(part, int):
            section[-1] = f"{section[-1]} #{part + 1}"
            continue
        annotation = model.model_fields[part].annotation
        inner = get_args(annotation)[0] if get_origin(annotation) is tuple else annotation
        model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else model
        section.append(FILE_NAMES.get(part, part))
    where = f"[{'.'.join(section)}]" if section else "the top level"
    dotted = ".".join(str(p) for p in loc)
    origin = next((f" (from {src})" for k, src in origins.items() if dotted == k or dotted.startswith(k + ".")), "")
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    return f"unknown key `{loc[-1]}` in {where}{origin}{hint} (known: {', '.join(model.model_fields)})"


FILE_NAMES = {"upstreams": "upstream"}
"""Sections whose TOML name differs from the model's (``[[upstream]]`` is ``upstreams``)."""


def masked(config: Config) -> dict[str, Any]:
    """The effective config as plain data, with every secret replaced by ``***``."""

    def mask(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ("***" if k in SECRET_KEYS and v else _without_password(v) if k == "proxy" else mask(v))
                    for k, v in value.items()}  # fmt: skip
        if isinstance(value, list):
            return [mask(v) for v in value]
        return value

    return dict(mask(config.model_dump(mode="json")))


def _without_password(url: str) -> str:
    """A proxy URL with its password, if any, masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def upstream_from_url(url: str) -> UpstreamConfig:
    """``--upstream URL``: one upstream named after the URL's host and port (Docker Hub if it is
    Hub; an IPv6 address keeps its brackets, ``[::1]:5001``, as a registry host is written)."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        name = DOCKER_HUB if parts.hostname in DOCKER_HUB_ALIASES else host
        return UpstreamConfig(name=name or "-", url=url)
    except ValidationError as exc:
        raise ConfigError(f"--upstream {url}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    except ValueError as exc:
        raise ConfigError(f"--upstream {url}: {exc}") from None
