"""``[[upstream]]``: one registry platproxy mirrors, and how it is reached."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from proxy.config.values import Interval, Section, is_loopback
from proxy.oci.names import DOCKER_HUB_ALIASES


class UpstreamConfig(Section):
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
    auth: Literal["config", "passthrough"] = "config"
    """``config``: platproxy pulls with ``username``/``password`` (or anonymously) for every client.
    ``passthrough``: each client pulls with its own credentials, which platproxy relays to this
    upstream only; cached private content is served only to a client the upstream accepts for
    that repository (checked, then remembered for ``auth_remember``)."""
    auth_remember: Interval = 60.0
    """How long an upstream's yes (this credential may pull this repository) is remembered, in
    memory only; also how long cached private content stays servable while the upstream is down."""
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
        if "@" in parts.netloc:  # said without the URL: it would print the password
            raise ValueError("the URL has credentials in it; give them as username and password instead "
                             "(a URL is printed in logs and banners)")  # fmt: skip
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
        if self.auth == "passthrough" and (self.username or self.password):
            raise ValueError("auth = \"passthrough\" pulls with each client's own credentials: "
                             "remove username and password, or use auth = \"config\"")  # fmt: skip
        if parts.scheme == "http" and self.proxy and (self.username or self.auth == "passthrough"):
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
