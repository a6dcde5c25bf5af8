#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs ruff, mypy and pytest.
#
#   bash scripts/test.sh [pytest args...]
#
# System packages (the real upstream registry and the real clients the end-to-end tests drive)
# come from Debian; Python packages go into .venv beside this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(docker-registry skopeo podman containerd docker.io curl mount util-linux systemd python3-venv ceph-mon ceph-osd radosgw nginx chromium)
COMMANDS=(docker-registry skopeo podman containerd ctr dockerd curl mount unshare setpriv systemd-analyze ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool nginx chromium)

missing=()
for cmd in "${COMMANDS[@]}"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd"); done
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "scripts/test.sh: missing ${missing[*]}; run as root or: apt-get install -y ${DEBIAN_PACKAGES[*]}" >&2
        exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${DEBIAN_PACKAGES[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

export PATH="$PWD/.venv/bin:$PATH"
ruff check .
ruff format --check .
mypy
python -m pytest "$@"
# The servers the tests start run the default loop (asyncio); the proxy, TLS, blob, fill and
# fault suites run again under uvloop (loop = "uvloop").
if [ $# -eq 0 ] || [ "$*" = "-q" ]; then
    PLATPROXY_LOOP=uvloop python -m pytest -q tests/e2e/test_proxy.py tests/e2e/test_tls.py tests/e2e/test_blobs.py \
        tests/e2e/test_fill_workers.py tests/e2e/test_faults.py
fi
