"""Whose platform a tag is resolved for: the client's, when platproxy can tell, else this host's.

A sidecar resolves for the node it runs on; a central mirror serves engines of several
architectures.  For each request, in order (``choose``, pure):

0. a platform selector in the name (``platform.linux.arm64.v8/…``, a person's explicit word), or
   a tool that works on the index as published (``[resolve] index_tools``: cosign, BuildKit,
   crane, …) when its ``Accept`` takes an index: the index, unresolved, whoever asks;
1. the platform the node declares in its ``X-Platproxy-Platform`` header (containerd's
   ``hosts.toml``, written by ``platproxy node setup``);
2. a ``[[clients]]`` rule matching the client's address (first match wins), for fleets whose
   engines say nothing useful, then the platform the node at that address registered
   (``proxy.pull.registrations``: Docker, podman);
3. the platform a Docker engine names in its ``User-Agent`` (``os/linux arch/arm64``): this
   host's own os and architecture mean this host's full detected profile (variant, features,
   capabilities), another architecture gets the configured default variant;
4. this host, when the client is this host (``[resolve] host_addresses``); a remote client
   nothing places gets the index when it can read one, else ``[resolve] unknown_list_blind``.

The client's address is the connection's peer; ``X-Forwarded-For`` counts only when the peer is
a configured trusted proxy (never a header from anyone).  A ``User-Agent`` naming a platform
that does not exist falls through to the host and is logged.  Whatever a client sends, it only
chooses among the entries of the index: nothing here reaches another host or the disk.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache

import structlog

from hostinfo import HostProfile
from hostinfo.addresses import own_addresses
from hostinfo.normalize import normalize_arch, normalize_os
from hostinfo.probe import host_profile
from proxy.config import Capability, ClientRule, Config, check_platform
from proxy.errors import InvalidHeader
from proxy.oci.clients import index_tool, user_agent_platform
from proxy.pull.route import ALL

log = structlog.get_logger("platproxy.targets")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MEMO_SIZE = 8192
REFUSED = "!"
"""The record key of no answer: a remote client nothing places that cannot read an index, with
``[resolve] unknown_list_blind = "refuse"``."""
UNRESOLVED = "-"
"""The record key of a tag's unresolved answer (the index itself: for index tools, ``platform.all``
and a child proxy that resolves for its own host)."""


@dataclass(frozen=True)
class Target:
    """The platform one request is resolved for, and where that came from."""

    profile: HostProfile
    source: str
    """``selector``, ``tool``, ``proxy``, ``node``, ``rule``, ``registration``, ``user-agent``,
    ``host``, ``guess``, ``unknown client`` or ``refused``."""
    key: str
    """The tag records' key for this target (records are kept per target platform)."""

    @property
    def resolves(self) -> bool:
        """False: this client gets the index as published."""
        return self.key != UNRESOLVED

    @cached_property
    def platform(self) -> str:
        """Formatted once per target (targets are made once per distinct client and reused)."""
        return str(self.profile.platform) if self.resolves else "index"


def profile_key(profile: HostProfile) -> str:
    """What distinguishes one target's resolutions from another's: the whole target, its platform,
    capabilities, CPU features and OS features, since an index entry may ask for any of them.

    Features are named by a short digest of the sorted set (a detected host has a hundred): two
    targets share records, and the profile resolved for, only when every one of them is equal.
    """
    caps = profile.capabilities
    key = str(profile.platform) + "".join(f"+{k}" for k in ("ia32", "aarch32", "arm64") if getattr(caps, k))
    wanted = sorted(set(profile.platform.features)) + [f"os:{f}" for f in sorted(set(profile.platform.os_features))]
    if wanted:
        key += "+features:" + hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:16]
    return key


@dataclass(frozen=True)
class Choice:
    """``choose``'s answer: a rule, a platform named by a ``User-Agent``, or the host."""

    source: str
    rule: ClientRule | None = None
    platform: str = ""
    """The platform to resolve for (a selector's, a ``User-Agent``'s); ``all``: the index itself."""
    ignored: str = ""
    """A ``User-Agent`` platform that was not used, and why (for the log)."""


def choose(address: str, user_agent: str, rules: list[tuple[Network, ClientRule]], host: HostProfile,
           default_variants: dict[str, str], use_user_agent: bool = True, *, selector: str = "",
           tool: str = "", node: str = "", registered: str = "", remote: bool = False,
           accepts_index: bool = True) -> Choice:  # fmt: skip
    """Pure: which source decides the platform for a client at ``address`` with ``user_agent``.

    ``selector``: the platform (or ``all``) the name selects; ``tool``: the index tool the client
    is, when its ``Accept`` takes an index; ``node``: the platform the node declared in its
    header (checked); ``registered``: the platform the node at ``address`` registered (after
    rules: the operator's word first); ``remote``: the client is not this host (a node of a fleet), so nothing of
    this host's own profile is assumed for it: a ``User-Agent`` naming this host's architecture
    gets the default variant, and a client nothing places gets the index (``unknown``) or, when
    it cannot read one, this host's answer as a ``guess``."""
    if selector:
        return Choice("selector", platform=selector)
    if tool:
        return Choice("tool", platform=ALL)
    if node:
        return Choice("node", platform=node)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if ip is not None:
        for network, rule in rules:
            if ip.version == network.version and ip in network:
                return Choice("rule", rule=rule)
    if registered:
        return Choice("registration", platform=registered)
    named = user_agent_platform(user_agent) if use_user_agent else None
    if named is None:
        if not remote:
            return Choice("host")
        return Choice("unknown client", platform=ALL) if accepts_index else Choice("guess")
    os_name, arch = normalize_os(named[0]), normalize_arch(named[1])[0]
    if (os_name, arch) == (host.platform.os, host.platform.architecture) and not remote:
        return Choice("host")
    spec = f"{os_name}/{arch}" + (f"/{default_variants[arch]}" if arch in default_variants else "")
    try:
        check_platform(spec)
    except ValueError as exc:
        return Choice("host", ignored=f"{named[0]}/{named[1]}: {exc}")
    return Choice("user-agent", platform=spec)


def in_networks(address: str, networks: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in networks)


def client_address(peer: str, forwarded_for: str, trusted: list[Network]) -> str:
    """The client's address: the peer, or, behind trusted proxies, the nearest untrusted hop."""
    hops = [peer, *(h.strip() for h in reversed(forwarded_for.split(",")) if h.strip())]
    for hop in hops:
        if not in_networks(hop, trusted):  # not a trusted proxy (or not an address: no rule matches it)
            return hop
    return hops[-1]


class Targets:
    """Turns a request's peer address, ``X-Forwarded-For`` and ``User-Agent`` into a ``Target``."""

    def __init__(self, config: Config, host: HostProfile, registered: Callable[[str], str] = lambda _: "") -> None:
        self.config = config
        self.registered = registered
        """The platform a node registered for an address (``""``: none); ``forget`` when it changes."""
        self.host = Target(host, "host", profile_key(host))
        self.rules = [(ipaddress.ip_network(r.cidr), r) for r in config.clients]
        self.trusted = [ipaddress.ip_network(c) for c in config.resolve.trusted_proxies]
        self.children = [ipaddress.ip_network(c) for c in config.resolve.child_proxies]
        self.host_networks = [ipaddress.ip_network(c) for c in config.resolve.host_addresses or own_addresses()]
        """Whose clients are this host: resolved for this host's own profile (a sidecar)."""
        # A fleet is a few thousand (address, User-Agent) pairs asking again and again: each is
        # decided once (and an ignored User-Agent platform logged once), not on every request.
        self._decide = lru_cache(maxsize=MEMO_SIZE)(self._decide_uncached)
        self._refuse_unresolved = lru_cache(maxsize=MEMO_SIZE)(self._refuse_unresolved_uncached)  # logged once

    def forget(self) -> None:
        """What places a node changed (a registration): decide every client afresh."""
        self._decide.cache_clear()

    def index(self, source: str) -> Target:
        return Target(self.host.profile, source, UNRESOLVED)

    def is_host(self, address: str) -> bool:
        """The client is this host (``[resolve] host_addresses``; default loopback and its own)."""
        return in_networks(address, self.host_networks)

    def address_of(self, peer: str, forwarded_for: str) -> str:
        """The client's address, as rules and registrations see it."""
        return client_address(peer, forwarded_for, self.trusted) if self.trusted else peer

    def for_request(self, peer: str, forwarded_for: str, user_agent: str, *, selector: str = "",
                    accepts_index: bool = False, unresolved: bool = False,
                    authenticated: bool = False, node: str = "") -> Target:  # fmt: skip
        """``unresolved``: the request asks for the index as published (``X-Platproxy-Resolve:
        none``, sent by a child platproxy); granted only to a configured child proxy's address or
        an authenticated client, since the answer would otherwise be any client's to shape."""
        if unresolved:
            if authenticated or in_networks(peer, self.children):
                return self.index("proxy")
            self._refuse_unresolved(peer)
        address = self.address_of(peer, forwarded_for)
        return self._decide(address, user_agent, selector, accepts_index, node)

    def _refuse_unresolved_uncached(self, peer: str) -> None:
        log.warning("X-Platproxy-Resolve ignored: not from a configured child proxy ([resolve] child_proxies)",
                    address=peer)  # fmt: skip

    def _decide_uncached(self, address: str, user_agent: str, selector: str, accepts_index: bool, node: str) -> Target:
        node = node_platform(node) if node else ""  # checked once per distinct header (a raise is not kept)
        tool = index_tool(user_agent, self.config.resolve.index_tools) if accepts_index else ""
        remote = bool(address) and not in_networks(address, self.host_networks)  # no address: this host asking
        choice = choose(address, user_agent, self.rules, self.host.profile, self.config.resolve.default_variants,
                        self.config.resolve.user_agent, selector=selector, tool=tool, node=node, remote=remote,
                        registered=self.registered(address), accepts_index=accepts_index)  # fmt: skip
        if choice.source == "guess":
            log.warning("a remote client nothing places, which cannot read an index: resolved for this host as a "
                        "guess (declare the node's platform, or a [[clients]] rule)", address=address,
                        user_agent=user_agent[:200], answer=self.config.resolve.unknown_list_blind)  # fmt: skip
            if self.config.resolve.unknown_list_blind == "refuse":
                return Target(self.host.profile, "refused", REFUSED)
            return Target(self.host.profile, "guess", self.host.key)
        if choice.ignored:
            log.info("user-agent platform ignored", address=address, reason=choice.ignored)
        if choice.rule is not None:
            rule = choice.rule
            return _target(rule.platform, rule.features, rule.ia32, rule.aarch32, "rule")
        if choice.platform == ALL:
            return self.index(choice.source)
        if choice.platform:
            return _target(choice.platform, (), "no", "no", choice.source)
        return self.host


@cache
def _target(platform: str, features: tuple[str, ...], ia32: Capability, aarch32: Capability, source: str) -> Target:
    """Profiles are built once per distinct description (a rule, a User-Agent's platform)."""
    profile = host_profile(platform, features, ia32, aarch32)
    return Target(profile, source, profile_key(profile))


NODE_HEADER = "X-Platproxy-Platform"
"""A node declares its platform with it (containerd's ``hosts.toml`` ``[host."…".header]``)."""


def node_platform(value: str) -> str:
    """The platform a node header declares, normalized; ``InvalidHeader`` for one that does not
    exist (a typo must not send a node another platform's image)."""
    try:
        return str(check_platform(value.strip()))
    except ValueError as exc:
        raise InvalidHeader(f"{NODE_HEADER}: {exc}", {"header": NODE_HEADER, "value": value[:100]}) from None
