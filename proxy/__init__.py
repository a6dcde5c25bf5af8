"""platproxy's server, resolver and command line, in layers that only ever import downward.

- ``errors``, ``sizes``, ``logs``, ``metrics``: the base every layer may use (domain errors,
  shared size limits, log output, the Prometheus registry); they import nothing of platproxy.
- ``wire``: blocking HTTP for worker threads that copy a blob's bytes off the event loop (an
  upstream's for ``registry``, another replica's for ``storage``); imports ``sizes`` only.
- ``sending``: ``sendfile`` to a client's socket on worker threads, so that the copies for many
  clients run on every core, not on the event loop's (``pull`` feeds a fill's clients with it).
- ``tlsrelay``: TLS on the client listener, encrypted on relay threads (every core, not the
  loop's one); ``sending`` hands it the files it sends over TLS.
- ``oci``: the OCI domain (names, media types, digests, descriptors, the resolver); pure.
- ``config``: the configuration models.
- ``registry`` (the upstream client) and ``storage`` (the store interface, its backends, tag
  records, the disk budget): side by side, neither imports the other.
- ``pull``: the pull services (manifests, blobs, fills, freshness, routing).
- ``http``: the aiohttp edge (handlers, error mapping, auth, guard, health, wiring).
- ``cli``: the ``platproxy`` command.

``hostinfo`` (what this host is) sits below all of them and imports nothing of ``proxy``.
``tests/test_architecture.py`` checks every import against the "May import" line of each
package, and that the import graph has no cycle.

May import: hostinfo.
"""
