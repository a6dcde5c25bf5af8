#!/usr/bin/env bash
# The benchmark, from a fresh clone: installs what it drives, then runs bench/run.py.
#   bash bench/run.sh [--reps 3] [--seconds 5] [--blob-mib 256] [--s3-blob-mib 64 (0: no S3 lines)]
#                     [--scale 1000,10000,100000 ("": none)] [--bucket-objects 100000 (0: none)]
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for cmd in docker-registry skopeo nginx wrk curl ceph-mon ceph-osd radosgw; do command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd"); done
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "bench/run.sh: missing ${need[*]}; run as root or install them" >&2; exit 2; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        docker-registry skopeo nginx-light wrk curl python3-venv ceph-mon ceph-osd radosgw >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
exec .venv/bin/python bench/run.py "$@"
