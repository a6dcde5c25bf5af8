"""What ``platproxy node`` asks the mirror: is it there, register this node (or forget it), open
a check and read what was seen for it.  Plain HTTP calls from the node (``urllib``: a command
that runs once needs no event loop); TLS verified against the system's CAs or ``--ca``.

Credentials for a mirror with ``[auth] htpasswd`` come from ``PLATPROXY_MIRROR_CREDENTIALS``
(``user:password``), never from the command line, where any process could read them; they are
sent to the mirror's own origin only and never printed.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.request
from typing import Any

TIMEOUT = 10.0
CREDENTIALS_ENV = "PLATPROXY_MIRROR_CREDENTIALS"


class MirrorError(Exception):
    """The mirror could not be asked, or refused; the message says which and why."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Mirror:
    def __init__(self, url: str, ca: str = "") -> None:
        self.url = url.rstrip("/")
        self.context = ssl.create_default_context(cafile=ca or None) if url.startswith("https") else None
        credentials = os.environ.get(CREDENTIALS_ENV, "")
        self.authorization = f"Basic {base64.b64encode(credentials.encode()).decode()}" if credentials else ""

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.authorization:
            request.add_header("Authorization", self.authorization)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT, context=self.context) as answer:
                text = answer.read(1 << 20)
        except urllib.error.HTTPError as exc:
            raise MirrorError(f"the mirror at {self.url} answered {exc.code}: {_message(exc.read(4096))}",
                              exc.code) from None  # fmt: skip
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MirrorError(f"the mirror at {self.url} is unreachable: {reason}") from None
        try:
            return json.loads(text) if text else {}
        except ValueError:
            raise MirrorError(f"{self.url} is not a platproxy mirror (its answer to {path} is not JSON)") from None

    def probe(self) -> None:
        """``MirrorError`` unless a registry answers at the URL (a 401 is an answer: it is there)."""
        try:
            self._call("GET", "/v2/")
        except MirrorError as exc:
            if exc.status != 401:
                raise

    def register(self, platform: str, runtime: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("POST", "/_platproxy/nodes", {"platform": platform, "runtime": runtime})
        return found

    def unregister(self) -> None:
        try:
            self._call("DELETE", "/_platproxy/nodes")
        except MirrorError as exc:
            if exc.status != 404:  # nothing registered: nothing to remove
                raise

    def open_check(self) -> str:
        nonce = self._call("POST", "/_platproxy/checks").get("nonce", "")
        if not isinstance(nonce, str) or not nonce:
            raise MirrorError(f"{self.url} opened no check (is it a platproxy mirror of this version?)")
        return nonce

    def read_check(self, nonce: str) -> list[dict[str, Any]]:
        sightings = self._call("GET", f"/_platproxy/checks/{nonce}").get("sightings", [])
        return [s for s in sightings if isinstance(s, dict)] if isinstance(sightings, list) else []


def _message(body: bytes) -> str:
    try:
        errors = json.loads(body)["errors"]
        return str(errors[0]["message"])[:300]
    except (ValueError, KeyError, IndexError, TypeError):
        return body.decode(errors="replace")[:200] or "no message"
