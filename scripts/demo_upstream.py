"""A local upstream registry for a first pull without Docker Hub: Debian's docker-registry
(Distribution 2.8) on 127.0.0.1:PORT, seeded with ``library/hello:1``, a small image for
linux/amd64, linux/arm64 and linux/arm/v7 built here (each platform's /etc/platform names it).

    python3 scripts/demo_upstream.py [--port 5001]

Runs until interrupted (Ctrl-C or SIGTERM), then stops the registry and removes its storage.
It uses the test suite's own image builder and registry fixture (``tests/``), so it needs the
checkout and ``apt-get install docker-registry``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.indexes import Case
from tests.ocibuild import gzip_layer, image, index
from tests.registry import Registry, push_case

PLATFORMS = ({"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64", "variant": "v8"},
             {"os": "linux", "architecture": "arm", "variant": "v7"})  # fmt: skip


def hello() -> Case:
    named = {}
    for p in PLATFORMS:
        spec = "/".join(p[k] for k in ("os", "architecture", "variant") if k in p)
        named[spec] = image(p, [gzip_layer({"etc/platform": f"{spec}\n".encode()})])
    return Case(index(list(named.values())), [b for i in named.values() for b in (i.manifest, *i.blobs())], named)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="platproxy-demo-") as root:
        registry = Registry(Path(root), port=args.port).start()
        try:
            push_case(registry, "library/hello:1", hello())
            print(f"demo upstream: {registry.url} holds library/hello:1 (linux/amd64, linux/arm64/v8, linux/arm/v7)",
                  flush=True)  # fmt: skip
            stop.wait()
        finally:
            registry.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
