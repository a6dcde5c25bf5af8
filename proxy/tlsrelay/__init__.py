"""TLS on the client listener, encrypted on threads so that TLS streams use every core.

Why: asyncio encrypts every TLS connection on the event loop's one thread, in Python's
``sslproto`` (a record at a time through memory buffers), so a mirror's cached blobs left over
TLS at 0.11-0.14x of nginx's rate, and at 0.6-0.7x even when read in large pieces on the
standard loop or uvloop.  Here the listener is accepted on the loop, and each connection is
handed to one of a few relay threads.  A relay thread runs its own ``selectors`` loop over
non-blocking ``ssl`` sockets: it does the handshake, then carries decrypted bytes to a
socketpair whose other end the event loop serves as a plain connection (aiohttp sees the
client's address and the TLS context through ``RelayedTransport``), and encrypts what the loop
writes back.  OpenSSL runs with the GIL released, so relay threads encrypt on every core while
the loop parses requests.

A blob's body does not cross the socketpair: ``send_file`` asks the relay thread to read the
file range itself and encrypt it straight onto the client's socket (``proxy.sending`` does this
for every file it sends over a relayed connection).  The loop writes the response's headers,
waits until they are in the socketpair, and posts the job; the relay sends every byte the loop
wrote before the job (it reads the socketpair until it is empty), then the file, then goes on.

Measured on 2 cores (``bench/tls.py``, a cached 256 MiB blob, the same certificate): a blocking
thread doing exactly this sends 1,380-1,430 MB/s against nginx's 1,380-1,460 (with
``TCP_NODELAY``; without it, 1,050-1,250), where the loop's own TLS sent 760-980 MB/s.

The package: ``worker`` (a relay thread and its connections' state machine, and the ``Link``
the loop holds), ``transport`` (what aiohttp sees of a relayed connection) and ``listener``
(accepting on the loop, handing out connections).

May import: nothing of platproxy.
"""

from proxy.tlsrelay.listener import TlsRelay
from proxy.tlsrelay.transport import RelayedTransport
from proxy.tlsrelay.worker import Link

__all__ = ["Link", "RelayedTransport", "TlsRelay"]
