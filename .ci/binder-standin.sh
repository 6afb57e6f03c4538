#!/usr/bin/env bash
# The Binder stand-in: build an image from binder/ the way repo2docker does (see
# .ci/binder-standin.Dockerfile), then, under Binder's limits (2 GB, no swap, 1 CPU):
#   1. run the whole course headless (`mlops-lab run`) and print its run table;
#   2. walk through every lab in ONE JupyterLab as a learner would (each lab's kernel left running),
#      print its run table and the container's peak memory against the 1.5 GB target;
# and check that the kernel never OOM-killed anything.
# Usage: bash .ci/binder-standin.sh [run|walk|all]   (default: all; CI runs `walk`, which runs every
# lab in the image under the limits). Needs a Docker daemon and the
# local base image (bash .ci/base-image.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
image=mlops-lab/binder-standin:latest
base=${MLOPS_LAB_BASE_IMAGE:-mlops-lab/python:3.11-slim-local}
limits=(--memory=2g --memory-swap=2g --cpus=1)
peak_target_mb=${MLOPS_LAB_WALK_PEAK_MB:-1536}
# MLOPS_LAB_WALK_ENFORCE=1 fails the walk-through when its peak passes the target. Off by default:
# today all six kernels left running peak near 2 GB (see the README's figures), and that is the
# labs' own memory, not something this check can fix.
walk_options=()
[[ ${MLOPS_LAB_WALK_ENFORCE:-0} == 1 ]] && walk_options=(--enforce-peak)
# MLOPS_LAB_WALK_SHUT_DOWN=1: the learner follows lab 00's advice and shuts down each finished lab's kernel.
[[ ${MLOPS_LAB_WALK_SHUT_DOWN:-0} == 1 ]] && walk_options+=(--shut-down-finished)
start=$(date +%s)
log() { printf '[binder %4ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }

# The build context is what Binder would see: the repository's files (git's view, without ignored ones).
log "building $image from binder/ (base $base)"
git ls-files -co --exclude-standard -z \
  | tar --null --ignore-failed-read -T - -c 2>/dev/null \
  | docker build -q --build-arg BASE_IMAGE="$base" -t "$image" -f .ci/binder-standin.Dockerfile - >/dev/null
log "built ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"

oom_check() {  # container name -> fails when the kernel OOM-killed something in it
  local state
  state=$(docker inspect -f 'OOMKilled={{.State.OOMKilled}} exit={{.State.ExitCode}}' "$1")
  log "$1: $state"
  [[ $state == OOMKilled=false* ]]
}

status=0
if [[ $what == run || $what == all ]]; then
  name=mlops-lab-binder-run-$$
  log "mlops-lab run (all solutions) in $name, limits: ${limits[*]}"
  docker run --name "$name" "${limits[@]}" --network none "$image" mlops-lab run || status=1
  oom_check "$name" || status=1
  docker rm -f "$name" >/dev/null
fi

if [[ $what == walk || $what == all ]]; then
  name=mlops-lab-binder-walk-$$
  token=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
  log "walk-through: every lab in one JupyterLab in $name, limits: ${limits[*]}"
  docker run -d --name "$name" "${limits[@]}" --network none "$image" \
    jupyter lab --ip=127.0.0.1 --port=8888 --no-browser --IdentityProvider.token="$token" >/dev/null
  docker exec "$name" ./binder/start python .ci/binder-walkthrough.py --url http://127.0.0.1:8888 --token "$token" \
    --peak-target-mb "$peak_target_mb" "${walk_options[@]}" || status=1
  oom_check "$name" || status=1
  docker rm -f "$name" >/dev/null
fi
log "done (status $status)"
exit "$status"
