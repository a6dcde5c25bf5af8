"""A real nginx with ``proxy_cache`` in front of a server under test: the shared HTTP cache that
sites put before a mirror.  It caches every status for 10 minutes and keys by the URI alone, so
what an answer depends on reaches the cache only through the answer's ``Vary`` and
``Cache-Control`` headers, as HTTP says."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.registry import free_port, wait_http


@dataclass
class CachingNginx:
    root: Path
    backend: str
    """``HOST:PORT`` of the server behind."""
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CachingNginx:
        tool = shutil.which("nginx") or "/usr/sbin/nginx"
        assert Path(tool).exists(), "nginx must be installed (scripts/test.sh installs it)"
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "nginx.conf"
        conf.write_text(f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1; daemon off; pid {self.root}/nginx.pid; error_log stderr error;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {self.root}/b; proxy_temp_path {self.root}/p; fastcgi_temp_path {self.root}/f;
  uwsgi_temp_path {self.root}/u; scgi_temp_path {self.root}/s;
  proxy_cache_path {self.root}/cache keys_zone=mirror:1m;
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://{self.backend};
      proxy_http_version 1.1;
      proxy_cache mirror;
      proxy_cache_key $request_uri;
      proxy_cache_valid any 10m;
      add_header X-Cache-Status $upstream_cache_status always;
    }}
  }}
}}
""")
        self.proc = subprocess.Popen([tool, "-c", str(conf), "-e", "stderr"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)  # fmt: skip
        wait_http(self.port, "/v2/", proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
