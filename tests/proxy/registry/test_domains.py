"""Where an upstream's credentials may go: its registrable domain (pure)."""

from __future__ import annotations

import pytest

from proxy.registry.auth import registrable_domain

SHA = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("host", "domain"),
    [("auth.docker.io", "docker.io"), ("registry-1.docker.io", "docker.io"), ("127.0.0.1", "127.0.0.1"),
     ("localhost", "localhost"), ("ghcr.io", "ghcr.io")],
)  # fmt: skip
def test_registrable_domain(host: str, domain: str) -> None:
    assert registrable_domain(host) == domain
