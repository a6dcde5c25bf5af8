"""Node onboarding: what ``platproxy node setup`` writes for each container runtime on a node so
that its pulls go through the mirror (containerd's ``hosts.toml`` with the node's platform
header, Docker's ``registry-mirrors``, a ``registries.conf.d`` drop-in for podman and CRI-O,
k3s's ``registries.yaml``), where each runtime really reads it (``containerd config dump``), and
the record of every file written so that ``node undo`` restores exactly what was there.  The
decisions are pure functions over text; the command line reads and writes the files.

May import: hostinfo.
"""
