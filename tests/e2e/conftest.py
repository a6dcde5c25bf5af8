"""The end-to-end suite's shared servers beyond the session registry (``tests/conftest.py``):
one Ceph cluster with two gateways, started once for every test module that needs a bucket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rgw import Rgw


@pytest.fixture(scope="session")
def rgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rgw]:
    server = Rgw(tmp_path_factory.mktemp("ceph")).start()
    try:
        yield server
    finally:
        server.stop()
