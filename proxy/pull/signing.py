"""The key that signs schema 1 manifests: made once, kept, so signatures and key IDs stay stable.

Distribution made a new key at every start unless ``signingkeyfile`` was set, so the same
image came back signed by another key after each restart.  platproxy keeps one: a configured
PEM file, or ``schema1-signing-key.pem`` in the cache directory, created with mode 0600 (never
readable by others) and an exclusive create (two replicas starting at once keep one key).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from proxy.config import Config

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

DEFAULT_KEY_FILE = "schema1-signing-key.pem"


class SigningKeyError(Exception):
    """The key file cannot be read, made or used; the message names the file."""


def load_signing_key(path: Path, *, create: bool) -> EllipticCurvePrivateKey:
    """The P-256 key in ``path`` (PEM, PKCS#8 or SEC 1); made there first if ``create``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if create and not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use that one
        except OSError as exc:
            raise SigningKeyError(f"cannot create the schema 1 signing key {path}: {exc.strerror or exc}") from None
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise SigningKeyError(f"cannot read the schema 1 signing key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != "secp256r1":
        raise SigningKeyError(f"{path} must hold a P-256 (prime256v1) EC key for ES256 signatures")
    return loaded


def key_path(config: Config) -> tuple[Path, bool]:
    """Where the signing key is, and whether platproxy makes it there when it is missing."""
    if config.compat.signing_key:
        return Path(config.compat.signing_key).expanduser(), False
    return config.cache.path() / DEFAULT_KEY_FILE, True


class SigningKey:
    """The configured key, loaded (or made) on first use and then kept in memory."""

    def __init__(self, config: Config) -> None:
        self.path, self.create = key_path(config)
        self._key: EllipticCurvePrivateKey | None = None

    def __call__(self) -> EllipticCurvePrivateKey:
        if self._key is None:
            self._key = load_signing_key(self.path, create=self.create)
        return self._key
