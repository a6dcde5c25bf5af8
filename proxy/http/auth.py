"""Client authentication for a shared mirror: an htpasswd file of bcrypt hashes.

Off by default (a sidecar on loopback needs none).  When on, every ``/v2/`` request needs
``Authorization: Basic``; without it the answer is ``401 UNAUTHORIZED`` with the
``WWW-Authenticate: Basic realm="..."`` challenge that docker, containerd, podman and skopeo
answer by sending their configured credentials.  bcrypt is slow on purpose, so checks run off
the event loop and a successful (user, password) pair is remembered for a few minutes.  The
file is re-read when it changes.  Credentials are never logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import bcrypt
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from proxy.errors import Unauthorized
from proxy.http.record import record

REMEMBER_SECONDS = 300.0
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


class HtpasswdError(ValueError):
    """An unreadable or malformed htpasswd file; the message names the line."""


BCRYPT_MAX_PASSWORD = 72
"""bcrypt reads at most 72 bytes and the library refuses more: a longer password matches no hash
(no tool makes one from it), so it is a plain no, before any hashing."""


def parse_htpasswd(text: str, source: str) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            raise HtpasswdError(f"{source} line {number}: expected user:bcrypt-hash")
        if not hashed.startswith(_BCRYPT_PREFIXES):
            raise HtpasswdError(f"{source} line {number}: only bcrypt hashes are accepted (htpasswd -B)")
        users[user] = hashed.encode()
    return users


class Htpasswd:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = -1.0
        self.users: dict[str, bytes] = {}
        self._good: dict[tuple[str, bytes], float] = {}
        self.reload()

    def reload(self, force: bool = False) -> None:
        """Read the file if it changed (or ``force``); a bad file raises and changes nothing."""
        try:
            mtime = self.path.stat().st_mtime
            if force or mtime != self._mtime:
                self._mtime = mtime  # a bad version is reported once, not on every request
                self.users = parse_htpasswd(self.path.read_text(), str(self.path))
                self._good.clear()
        except OSError as exc:
            raise HtpasswdError(f"cannot read {self.path}: {exc.strerror or exc}") from None

    def refresh(self, force: bool = False, context: str = "") -> bool:
        """Pick up a changed file (on a request; ``force``: on SIGHUP); a broken one is logged and
        the current users kept (an editor's half-written save must not lock everyone out).
        False when it was broken."""
        try:
            self.reload(force)
        except HtpasswdError as exc:
            structlog.get_logger("platproxy").warning(f"{context}htpasswd not reloaded; keeping the current one",
                                                      error=str(exc))  # fmt: skip
            return False
        return True

    async def check(self, user: str, password: str) -> bool:
        self.refresh()
        hashed = self.users.get(user)
        if hashed is None or len(password.encode()) > BCRYPT_MAX_PASSWORD:
            return False
        key = (user, hashlib.sha256(password.encode()).digest())
        if self._good.get(key, 0) > time.monotonic():
            return True
        ok = await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed.replace(b"$2y$", b"$2b$", 1))
        if ok:
            self._good[key] = time.monotonic() + REMEMBER_SECONDS
        return ok


def basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


GUARDED = ("/v2", "/_platproxy/nodes", "/_platproxy/checks")
"""The registry API and the node endpoints (registration, checks): what a user must log in for."""


def auth_middleware(htpasswd: Htpasswd, realm: str) -> Middleware:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith(GUARDED):
            creds = basic_credentials(request.headers.get("Authorization", ""))
            if creds is None or not await htpasswd.check(*creds):
                raise Unauthorized(f'Basic realm="{realm}"')
            record(request).user = creds[0]
        return await handler(request)

    return middleware
