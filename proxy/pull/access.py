"""Who may have what, for an upstream with ``auth = "passthrough"``: the cache is never an oracle.

The cache is content-addressed and shared: a blob fetched for one client's private repository
is on disk for everyone.  So before a request for such an upstream is answered, from the cache
or not, the upstream itself is asked whether this client may pull this object of this
repository, and its yes is remembered for ``auth_remember`` (in memory only):

1. Is the repository public?  platproxy asks anonymously once per window; a public repository
   keeps the fast path for every client, whatever credentials it sends.
2. Otherwise the client's own credential is checked with a ``HEAD`` of the object it asked for;
   a yes is remembered per (credential digest, repository).  A no is never remembered as a yes.
3. An object is served under a repository name only when the upstream has it in that
   repository (``proxy.pull.members``): known from a check, or from a manifest served for that
   repository.  A digest cached for another repository is not served under this one just
   because it is on disk.

A yes is remembered per login: a token the relay fetched with basic credentials counts as
those credentials (``owners``), so a client that logs in again with a fresh token is not
checked again within the window, and a token fetched without credentials is anonymous.

While the upstream cannot be reached, a repository last seen public is still served; private
content is served only to a client whose yes is still remembered; anything else is 503.

``decide`` and ``after_check`` are the whole policy, as pure functions over what is known.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from proxy.errors import CannotAuthorize, PlatproxyError, Subject, UpstreamError, UpstreamFailed
from proxy.oci.names import is_digest
from proxy.pull.members import Members
from proxy.pull.route import Route
from proxy.registry.client import Upstream, probe_status
from proxy.registry.credentials import CLIENT_CREDENTIAL, ClientCredential, token_digest

MAX_REMEMBERED = 100_000
"""Remembered yeses, anonymous tokens and repositories, each."""


class Step(Enum):
    SERVE_PUBLIC = "public"
    SERVE_PRIVATE = "private"
    ASK_ANONYMOUS = "ask anonymously"
    ASK_AS_CLIENT = "ask with the client's credential"
    CHALLENGE = "challenge"
    REFUSED = "refused"
    NOT_FOUND = "not found"
    UNAVAILABLE = "unavailable"


class Known(NamedTuple):
    """What is remembered about one request's repository, object and credential."""

    member: bool
    """The upstream has this object in this repository."""
    public: bool
    """Anonymous pulls of this repository worked within the window."""
    private: bool
    """Anonymous pulls of this repository were refused within the window."""
    granted: bool
    """This credential was let in to this repository within the window."""
    seen_public: bool
    """The repository was public when last checked, however long ago."""
    credential: bool
    """The client sent a credential (an anonymous token does not count)."""


def decide(k: Known) -> Step:
    """Before asking the upstream: serve, ask (how), or challenge."""
    if k.member and k.public:
        return Step.SERVE_PUBLIC
    if k.member and k.granted:
        return Step.SERVE_PRIVATE
    if not k.private:
        return Step.ASK_ANONYMOUS
    return Step.ASK_AS_CLIENT if k.credential else Step.CHALLENGE


def after_check(asked: Step, status: int | None, k: Known) -> Step:
    """After the upstream answered a check (``status``; ``None``: unreachable)."""
    if status is None or status >= 500 or status == 429:
        return Step.SERVE_PUBLIC if k.member and k.seen_public else Step.UNAVAILABLE
    if status < 300:
        return Step.SERVE_PUBLIC if asked is Step.ASK_ANONYMOUS else Step.SERVE_PRIVATE
    if status in (401, 403):
        if asked is Step.ASK_ANONYMOUS:
            return Step.ASK_AS_CLIENT if k.credential else Step.CHALLENGE
        return Step.REFUSED
    return Step.NOT_FOUND


@dataclass(frozen=True)
class Admission:
    credential: ClientCredential | None
    """What to pull with: ``None`` (platproxy's own, anonymous) for public content."""
    outcome: str
    """For the log: public, private, with ``remembered``/``checked``/``upstream unreachable``."""


class CredentialsNeeded(PlatproxyError):
    """No credential, or one the upstream refused: the HTTP edge answers with a challenge."""


class _Window:
    """Keys (with a value) remembered until a deadline, at most ``MAX_REMEMBERED`` (oldest
    dropped first)."""

    def __init__(self) -> None:
        self._until: OrderedDict[object, tuple[float, str]] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def get(self, key: object) -> str | None:
        entry = self._until.get(key)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    def holds(self, key: object, now: float) -> bool:
        entry = self._until.get(key)
        return entry is not None and entry[0] > now

    def add(self, key: object, seconds: float, value: str = "") -> None:
        self._until[key] = (time.monotonic() + seconds, value)
        self._until.move_to_end(key)
        while len(self._until) > MAX_REMEMBERED:
            self._until.popitem(last=False)

    def discard(self, key: object) -> None:
        self._until.pop(key, None)


class Access:
    """The memory of the upstream's answers, and the checks that fill it."""

    def __init__(self, upstreams: dict[str, Upstream], members: Members) -> None:
        self.upstreams = upstreams
        self.members = members
        self.public = _Window()
        self.private = _Window()
        self.granted = _Window()
        self.seen_public = _Window()
        self.anonymous = _Window()
        """Digests of the tokens the relay fetched without credentials: those clients are anonymous."""
        self.owners = _Window()
        """Token digest -> the login (basic credentials' digest) the relay fetched it for."""

    # -- what the relay tells it ---------------------------------------------------------------

    def note_token(self, token: str, owner: str | None, lifetime: float) -> None:
        """A token the relay handed out: fetched for the login ``owner`` (a credential digest),
        or without credentials (``None``)."""
        if owner is None:
            self.anonymous.add(token_digest(token), lifetime)
        else:
            self.owners.add(token_digest(token), lifetime, owner)

    # -- the check ------------------------------------------------------------------------------

    def credential_of(self, header: str) -> ClientCredential | None:
        """The client's credential; ``None`` for none, or for a token the relay fetched anonymously."""
        if not header.strip():
            return None
        credential = ClientCredential(header)
        if credential.digest in self.anonymous:
            return None
        credential.identity = self.owners.get(credential.digest) or credential.digest
        return credential

    async def admit(self, route: Route, kind: str, reference: str, credential: ClientCredential | None) -> Admission:
        """Let the request in (with what to pull as) or raise: ``CredentialsNeeded``, not found,
        ``CannotAuthorize``.  ``kind``: manifest (a tag or digest), blob or tags."""
        up = self.upstreams[route.upstream.name]
        repo = (up.name, route.repo)
        who = (credential.identity if credential else "", *repo)
        remember = route.upstream.auth_remember
        member = kind == "tags" or (kind == "manifest" and not is_digest(reference))  # a tag: records are per repo
        member = member or self.members.holds(route, reference)

        def known() -> Known:
            now = time.monotonic()
            return Known(member, self.public.holds(repo, now), self.private.holds(repo, now),
                         credential is not None and self.granted.holds(who, now), self.seen_public.holds(repo, now),
                         credential is not None)  # fmt: skip

        step = decide(known())
        checked = False
        while step in (Step.ASK_ANONYMOUS, Step.ASK_AS_CLIENT):
            asking = credential if step is Step.ASK_AS_CLIENT else None
            status = await self.ask(up, route.repo, kind, reference, asking)
            checked = True
            if status is not None and status < 300:
                if kind != "tags":
                    self.members.add(route, {reference: None})
                member = True
                if asking is None:
                    self.public.add(repo, remember)
                    self.seen_public.add(repo, 365 * 86400.0)
                    self.private.discard(repo)
                else:
                    self.granted.add(who, remember)
            elif status in (401, 403) and asking is None:
                self.private.add(repo, remember)
                self.public.discard(repo)
                self.seen_public.discard(repo)
            step = after_check(step, status, known())
        how = "checked" if checked else "remembered"
        if step is Step.SERVE_PUBLIC:
            offline = checked and not up.reachable
            return Admission(None, "public" + (", upstream unreachable" if offline else ""))
        if step is Step.SERVE_PRIVATE:
            return Admission(credential, f"private, {how}")
        what = f"{route.repo}:{reference}" if kind == "manifest" and member else f"{kind} {reference} of {route.repo}"
        if step is Step.CHALLENGE:
            raise CredentialsNeeded(f"{up.name}/{route.repo} is private: log in with your own credentials")
        if step is Step.REFUSED:
            raise CredentialsNeeded(f"upstream {up.name} refused these credentials for {route.repo}",
                                    {"repository": route.repo})  # fmt: skip
        if step is Step.UNAVAILABLE:
            raise CannotAuthorize(
                f"cannot check that this client may pull {route.repo}: upstream {up.name} is unreachable and no "
                f"answer for this client is remembered (within {remember:g}s)",
                {"upstream": up.name, "repository": route.repo},
            )  # fmt: skip
        subject = Subject.BLOB if kind == "blob" else Subject.REPOSITORY if kind == "tags" else Subject.MANIFEST
        raise UpstreamFailed(UpstreamError(up.name, 404, f"{what} not found"), subject, what)

    async def ask(
        self, up: Upstream, repo: str, kind: str, reference: str, credential: ClientCredential | None
    ) -> int | None:
        """The upstream's answer to ``credential`` (``None``: anonymous) for this object (see
        ``Upstream.probe``): 200 for a yes, its status for a no, ``None`` when unreachable."""
        token = CLIENT_CREDENTIAL.set(credential)
        try:
            return await probe_status(up, repo, kind, reference)
        finally:
            CLIENT_CREDENTIAL.reset(token)
