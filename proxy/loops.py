"""Which event loop the server runs on: uvloop (libuv, which aiohttp supports and recommends)
where it is installed, else the standard asyncio loop.

Measured (``bench/tls.py``, ``tests/e2e/test_s3_peers.py``): with blobs over TLS read in large
pieces (``proxy.http.blobs``), TLS and tag rates are level under both loops; uvloop serves a
fill's own clients faster, and a tier's waiting replicas then lag them by up to 1.5x.  So
``loop = "asyncio"`` is the default; ``"uvloop"`` insists on uvloop (a start-up error when it is
missing); ``"auto"`` takes it where it imports.  The banner and ``config check`` say which runs.

May import: nothing of platproxy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from importlib.util import find_spec

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class LoopMissing(RuntimeError):
    """``loop = "uvloop"`` on an installation without it."""


def chosen_loop(setting: str) -> tuple[str, LoopFactory | None, str]:
    """``(name, factory, why)``: the loop ``setting`` means here; ``factory`` is ``None`` for the
    standard loop; ``why`` says why ``auto`` fell back to it (empty otherwise)."""
    if setting == "asyncio":
        return "asyncio", None, ""
    if find_spec("uvloop") is None:
        if setting == "uvloop":
            raise LoopMissing('loop = "uvloop", but uvloop is not installed here (pip install uvloop, or loop = '
                              '"auto" to fall back to the standard loop)')  # fmt: skip
        return "asyncio", None, "uvloop is not installed here"
    import uvloop

    return "uvloop", uvloop.new_event_loop, ""
