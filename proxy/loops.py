"""Which event loop the server runs on: uvloop (libuv, which aiohttp supports and recommends)
where it is installed, else the standard asyncio loop.

TLS is where the two differ: the standard loop encrypts every record through Python's
``sslproto`` on the loop's one thread, a fraction of what the same certificate serves through
nginx, while uvloop's transport keeps up.  ``loop = "auto"`` (the default) takes uvloop when it
imports; ``"uvloop"`` insists on it (a start-up error when it is missing); ``"asyncio"`` keeps
the standard loop.  The banner and ``config check`` say which one runs.

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
