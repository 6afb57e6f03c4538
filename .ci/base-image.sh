#!/usr/bin/env bash
# Build a local stand-in for python:3.11-slim from Debian packages (CI cannot reach Docker Hub).
# Debian bookworm ships Python 3.11, so the image matches the public default.
# Usage: bash .ci/base-image.sh [TAG]   (default tag: mlops-lab/python:3.11-slim-local)
set -euo pipefail
tag=${1:-mlops-lab/python:3.11-slim-local}
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag already present"; exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; }
root=$(mktemp -d /tmp/mlops-lab-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$root" http://deb.debian.org/debian >/tmp/mlops-lab-debootstrap.log 2>&1 \
  || { tail -20 /tmp/mlops-lab-debootstrap.log; exit 1; }
# HTTPS from containers goes through a proxy only the host's CA bundle trusts.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# as the public slim image: no documentation, manual pages or translations (about 50 MB)
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3"]' - "$tag" >/dev/null
echo "built base image $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
