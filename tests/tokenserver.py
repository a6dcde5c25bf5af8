"""A small token server for Distribution's ``auth: token``: what Docker Hub, GHCR and Quay run.

The registry answers ``401`` with ``WWW-Authenticate: Bearer realm=<this server>,service=...,
scope=repository:<name>:pull``; a client asks this server for a token (``GET`` with basic
credentials or none, or ``POST`` with an OAuth2 password grant, as containerd does first) and
presents it as ``Authorization: Bearer``.  Tokens are JWTs signed with ES256 and carry the signing
certificate in ``x5c``; the registry trusts them through ``rootcertbundle``.

Access follows the users' globs (``team-a/*``); anyone, anonymous included, may pull what
``public`` names.  A refused scope is left out of the token (Docker Hub's behaviour), so an
anonymous or unauthorized client gets a token that the registry then refuses for that
repository.  Every request is recorded (``seen``) so tests can say who asked for what.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from proxy.http.auth import basic_credentials
from tests.indexes import Case
from tests.registry import Registry, push_case

SERVICE = "test-registry"
ISSUER = "test-token-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Seen:
    method: str
    authorization: str
    """The ``Authorization`` header as received (tests check whose credentials reached here)."""
    user: str
    scopes: list[str]
    granted: list[str]


@dataclass
class TokenServer:
    directory: Path
    users: dict[str, tuple[str, tuple[str, ...]]]
    """user -> (password, repository globs the user may pull)."""
    public: tuple[str, ...] = ("public/*",)
    host: str = "127.0.0.1"
    lifetime: int = 300
    seen: list[Seen] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    """Every token handed out (tests look for them where they must never be)."""

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.bundle = self.directory / "token-signer.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}/token"

    def registry_auth(self) -> str:
        """The ``auth:`` section of a Distribution config that trusts this server."""
        return (f"auth:\n  token:\n    realm: {self.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
                f"    rootcertbundle: {self.bundle}\n")  # fmt: skip

    def token(self, user: str, scope: str) -> str:
        """A token fetched as a client does (``GET`` with basic credentials)."""
        login = base64.b64encode(f"{user}:{self.users[user][0]}".encode()).decode()
        req = urllib.request.Request(f"{self.realm}?service={SERVICE}&scope={scope}",
                                     headers={"Authorization": f"Basic {login}"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(json.loads(resp.read())["token"])

    def start(self) -> TokenServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                server._answer(self, query, self.headers.get("Authorization", ""), None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                grant = form.get("grant_type", [""])[0]
                if grant != "password":
                    self._send(400, {"error": "unsupported_grant_type"})
                    return
                login = (form.get("username", [""])[0], form.get("password", [""])[0])
                server._answer(self, form, self.headers.get("Authorization", ""), login)

            def _send(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- tokens -------------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler, query: dict[str, list[str]], authorization: str,
                login: tuple[str, str] | None) -> None:  # fmt: skip
        user = ""
        if login is None and authorization:
            login = basic_credentials(authorization)
            if login is None:
                handler._send(401, {"details": "only basic credentials are accepted here"})  # type: ignore[attr-defined]
                return
        if login is not None:
            name, password = login
            if name not in self.users or self.users[name][0] != password:
                self.seen.append(Seen(handler.command, authorization, name, query.get("scope", []), []))
                handler._send(401, {"details": "incorrect username or password"})  # type: ignore[attr-defined]
                return
            user = name
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        globs = self.public + (self.users[user][1] if user else ())
        access: list[dict[str, object]] = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            if kind == "repository" and "pull" in actions.split(",") and any(fnmatch.fnmatch(repo, g) for g in globs):
                access.append({"type": "repository", "name": repo, "actions": ["pull"]})
        self.seen.append(Seen(handler.command, authorization, user, scopes, [str(a["name"]) for a in access]))
        token = self.sign(user, access, query.get("service", [SERVICE])[0])
        self.issued.append(token)
        body = {"token": token, "access_token": token, "expires_in": self.lifetime,
                "issued_at": datetime.datetime.now(datetime.UTC).isoformat()}  # fmt: skip
        handler._send(200, body)  # type: ignore[attr-defined]

    def sign(self, subject: str, access: list[dict[str, object]], audience: str = SERVICE) -> str:
        now = int(time.time())
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        claims = {"iss": ISSUER, "sub": subject, "aud": audience, "exp": now + self.lifetime, "nbf": now - 10,
                  "iat": now, "jti": uuid.uuid4().hex, "access": access}  # fmt: skip
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


USERS = {"alice": ("alice-Secr3t-pw", ("team-a/*",)), "bob": ("bob-Secr3t-pw", ("team-b/*",)),
         "carol": ("carol-Secr3t-pw", ("team-a/*",))}  # fmt: skip
"""alice and carol may pull team-a/*, bob team-b/*; anyone public/*."""


@dataclass
class TokenUpstream:
    """A Distribution registry with token auth and its token server, seeded with ``case``."""

    registry: Registry
    tokens: TokenServer
    case: Case

    @classmethod
    def start(cls, root: Path, case: Case, refs: Iterable[str]) -> TokenUpstream:
        """Seeded plain, then restarted with token auth (pushing needs no token of its own)."""
        registry = Registry(root / "registry").start()
        for ref in refs:
            push_case(registry, ref, case)
        registry.stop()
        tokens = TokenServer(root / "tokens", dict(USERS)).start()
        registry.auth = tokens.registry_auth()
        registry.start()
        return cls(registry, tokens, case)

    def stop(self) -> None:
        self.registry.stop()
        self.tokens.stop()

    def secrets(self) -> list[bytes]:
        """Every form a credential of this upstream may take: passwords, basic credentials (as
        sent), every token handed out so far, and the first 40 characters of each."""
        found = [p for p, _ in USERS.values()] + [basic(u).split()[1] for u in USERS] + self.tokens.issued
        return [form.encode() for s in found if s for form in (s, s[:40])]


def basic(user: str) -> str:
    """``Authorization: Basic`` for one of ``USERS``."""
    return "Basic " + base64.b64encode(f"{user}:{USERS[user][0]}".encode()).decode()


def passthrough_config(registry: Registry, remember: float = 60.0) -> str:
    """An ``[[upstream]]`` with ``auth = "passthrough"`` (also reachable as ``private.test/...``)."""
    return (f'[[upstream]]\nname = "{registry.address}"\naliases = ["private.test"]\nurl = "{registry.url}"\n'
            f'auth = "passthrough"\nauth_remember = "{remember}s"\n')  # fmt: skip
