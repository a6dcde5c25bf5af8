"""What the application holds for its handlers: the services, the metrics and the config."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.config import Config
from proxy.metrics import Metrics
from proxy.pull.access import Access
from proxy.pull.blobs import BlobService
from proxy.pull.canary import Checks
from proxy.pull.fills import Fills
from proxy.pull.fleetlog import FleetLog
from proxy.pull.manifests import ManifestService
from proxy.pull.members import Members
from proxy.pull.registrations import Registrations
from proxy.pull.targets import Targets


class Services:
    def __init__(self, manifests: ManifestService, blobs: BlobService, targets: Targets, access: Access,
                 members: Members, registrations: Registrations, checks: Checks, fleet: FleetLog) -> None:  # fmt: skip
        self.manifests = manifests
        self.blobs = blobs
        self.targets = targets
        self.access = access
        """Who may have what, for upstreams with ``auth = "passthrough"``."""
        self.members = members
        """Which repository holds what: stored content is served only under a name that holds it."""
        self.registrations = registrations
        """Nodes that registered their platform (``platproxy node setup``)."""
        self.checks = checks
        """Open node checks (``platproxy node check``'s canaries)."""
        self.fleet = fleet
        """Every resolution, counted for the fleet view."""


SERVICES: web.AppKey[Any] = web.AppKey("services", object)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
CONFIG: web.AppKey[Config] = web.AppKey("config", Config)
FILLS: web.AppKey[Fills] = web.AppKey("fills", Fills)
