#!/usr/bin/env bash
# Workshop tests need Debian's PostgreSQL server binaries (a local cluster is initialised per test
# module) and, for the JupyterHub test, configurable-http-proxy from npm.
set -euo pipefail
need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v npm >/dev/null || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null
fi
command -v configurable-http-proxy >/dev/null || npm install -g --silent configurable-http-proxy@5.3.0 >/dev/null
echo "postgres: $(ls -d /usr/lib/postgresql/*/bin | tail -1); configurable-http-proxy $(configurable-http-proxy --version)"
