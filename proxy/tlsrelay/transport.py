"""What aiohttp sees of a relayed connection: the socketpair's plain transport, answering
``get_extra_info`` for the client's side (its address, the TLS context) and carrying the
relay's ``Link`` (``proxy.sending`` looks for it to hand the relay a file)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from proxy.tlsrelay.worker import Link


class RelayedTransport(asyncio.Transport):
    """The loop's plain transport of a relayed connection, answering ``get_extra_info`` for the
    client's side (address, TLS context) and carrying the relay ``Link``."""

    def __init__(self, inner: asyncio.Transport, extra: dict[str, Any], link: Link) -> None:
        super().__init__()
        self._info = {**extra, "platproxy_tls_link": link}
        self._inner = inner
        self._link = link

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._info[name] if name in self._info else self._inner.get_extra_info(name, default)

    def write(self, data: Any) -> None:
        self._inner.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._inner.writelines(list_of_data)

    def write_eof(self) -> None:
        self._inner.write_eof()

    def can_write_eof(self) -> bool:
        return self._inner.can_write_eof()

    def abort(self) -> None:
        self._link.abort()
        self._inner.abort()

    def close(self) -> None:
        self._inner.close()

    def is_closing(self) -> bool:
        return self._inner.is_closing()

    def is_reading(self) -> bool:
        return self._inner.is_reading()

    def pause_reading(self) -> None:
        self._inner.pause_reading()

    def resume_reading(self) -> None:
        self._inner.resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._inner.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._inner.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._inner.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._inner.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._inner.get_protocol()


class Bridge(asyncio.Protocol):
    """Hands the application's protocol the relayed transport instead of the socketpair's."""

    def __init__(self, inner: asyncio.Protocol, extra: dict[str, Any], link: Link) -> None:
        self.inner, self.extra, self.link = inner, extra, link

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport instances, but have its methods)
        self.inner.connection_made(RelayedTransport(cast(asyncio.Transport, transport), self.extra, self.link))

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
