"""The ``platproxy`` command: ``main`` holds the table of subcommands, each in its own module
and imported only when it runs, so the quick ones (``hostinfo``, ``resolve``) start without
loading the server.

May import: hostinfo, proxy.errors, proxy.sizes, proxy.metrics, proxy.logs, proxy.loops,
proxy.oci, proxy.config, proxy.registry, proxy.storage, proxy.pull, proxy.http, proxy.node,
proxy.fleet, proxy.bundle.
"""

from proxy.cli.main import main

__all__ = ["main"]
