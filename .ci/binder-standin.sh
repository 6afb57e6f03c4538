#!/usr/bin/env bash
# The Binder stand-in: build an image from binder/ the way repo2docker does (see
# .ci/binder-standin.Dockerfile), then, under Binder's limits (2 GB, no swap, 1 CPU):
#   1. run the whole course headless (`mlops-lab run`), then the labs in preview (`mlops-lab run 09 10`), and
#      print their run tables;
#   2. walk through every lab in ONE JupyterLab as a learner would, on two paths: every lab's kernel
#      left running (JupyterLab's default: closing a tab keeps the kernel), and each finished lab's
#      kernel shut down (as lab 00 advises); print each path's run table and peak memory;
# and check that the kernel never OOM-killed anything.
# Usage: bash .ci/binder-standin.sh [run|walk|all]   (default: all; CI runs `all`). Needs a Docker
# daemon and the local base image (bash .ci/base-image.sh).
#   MLOPS_LAB_WALK_SHUT_DOWN=1 walks only the shut-down path, =0 only the kept path, =culled only the
#     culled path (default: all three). The culled path is the kept path with binder/jupyter's culler
#     in compressed time: a closed tab's kernel is shut down MLOPS_LAB_WALK_CULL_S seconds (default 20)
#     after it falls idle, standing for Binder's 15 minutes (a learner spends longer than that on a lab).
#   MLOPS_LAB_WALK_ENFORCE=1 fails the walk when a path's peak passes its limit (CI sets it):
#     kernels kept: MLOPS_LAB_WALK_KEPT_PEAK_MB (default 1850: Binder's 2,048 MB less 200 MB of headroom;
#       measured 1,746-1,753 MB with labs 00-08, the peak during lab 08's loop: its kernel training while
#       its server runs. It was 1,853-1,950 MB before the pre-loaded server warmed up the course's code
#       and glibc's mmap threshold was fixed, see binder/);
#     kernels shut down: MLOPS_LAB_WALK_PEAK_MB (default 1536: Binder's 2 GB less a margin).
#   MLOPS_LAB_WALK_ENFORCE=shut-down enforces the shut-down path's limit only (the kept path still fails
#     on an OOM kill or a failing lab, and reports its peak against its target).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
image=mlops-lab/binder-standin:latest
base=${MLOPS_LAB_BASE_IMAGE:-mlops-lab/python:3.11-slim-local}
limits=(--memory=2g --memory-swap=2g --cpus=1)
shut_down_limit_mb=${MLOPS_LAB_WALK_PEAK_MB:-1536}
kept_limit_mb=${MLOPS_LAB_WALK_KEPT_PEAK_MB:-1850}
cull_s=${MLOPS_LAB_WALK_CULL_S:-20}
case ${MLOPS_LAB_WALK_SHUT_DOWN:-both} in
  1) paths=(shut-down) ;;
  0) paths=(kept) ;;
  culled) paths=(culled) ;;
  *) paths=(kept culled shut-down) ;;
esac
enforce=()
[[ ${MLOPS_LAB_WALK_ENFORCE:-0} == 1 ]] && enforce=(--enforce-peak)
kept_enforce=("${enforce[@]}")
[[ ${MLOPS_LAB_WALK_ENFORCE:-0} == shut-down ]] && enforce=(--enforce-peak) && kept_enforce=()
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
# binder/postBuild warms the course's caches into the image. On Binder a failed warm-up is tolerated (the
# labs fill the caches on first use); here it fails the stand-in, which would otherwise measure a cold start.
warmed=$(docker run --rm --network none --entrypoint bash "$image" -c \
  'cd ~/.cache/mlops-lab 2>/dev/null && echo "$(ls ./*.pkl 2>/dev/null | wc -l) models, $(ls jobs/*.json 2>/dev/null | wc -l) CI job results"' \
  || true)  # no cache folder: reported below, not an exit here (set -e)
log "caches warmed into the image by binder/postBuild: ${warmed:-none}"
[[ $warmed =~ ^[1-9][0-9]*\ models,\ [1-9] ]] || { log "binder/postBuild warmed no model or no CI job result"; status=1; }
if [[ $what == run || $what == all ]]; then
  name=mlops-lab-binder-run-$$
  log "mlops-lab run (all solutions) in $name, limits: ${limits[*]}"
  docker run --name "$name" "${limits[@]}" --network none "$image" mlops-lab run || status=1
  oom_check "$name" || status=1
  docker rm -f "$name" >/dev/null
  # the labs in preview (09 Dagster, 10 Kubernetes), under the same limits: a learner on Binder can run them
  name=mlops-lab-binder-previews-$$
  log "mlops-lab run 09 10 (the labs in preview) in $name, limits: ${limits[*]}"
  docker run --name "$name" "${limits[@]}" --network none "$image" mlops-lab run 09 10 || status=1
  oom_check "$name" || status=1
  docker rm -f "$name" >/dev/null
fi

if [[ $what == walk || $what == all ]]; then
  summary=()
  for path in "${paths[@]}"; do
    name=mlops-lab-binder-walk-$path-$$
    token=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    options=("${kept_enforce[@]}" --peak-target-mb "$kept_limit_mb")
    [[ $path == shut-down ]] && options=("${enforce[@]}" --peak-target-mb "$shut_down_limit_mb" --shut-down-finished)
    culling=()
    if [[ $path == culled ]]; then
      options=("${enforce[@]}" --peak-target-mb "$shut_down_limit_mb" --culled-after "$cull_s")
      culling=(--MappingKernelManager.cull_idle_timeout="$cull_s" --MappingKernelManager.cull_interval=2)
    fi
    log "walk-through ($path): every lab in one JupyterLab in $name, limits: ${limits[*]}"
    docker run -d --name "$name" "${limits[@]}" --network none "$image" \
      jupyter lab --ip=127.0.0.1 --port=8888 --no-browser --IdentityProvider.token="$token" "${culling[@]}" >/dev/null
    out=$(mktemp)
    docker exec "$name" ./binder/start python .ci/binder-walkthrough.py --url http://127.0.0.1:8888 \
      --token "$token" "${options[@]}" | tee "$out" || status=1
    oom_check "$name" || status=1
    peak=$(grep -o 'walk-through peak memory: [0-9]* MB' "$out" | grep -o '[0-9]* MB' || echo "no peak (failed)")
    summary+=("$(printf '%-10s %s' "$path:" "$peak") $(grep -o 'target: .*' "$out" | sed 's/target: //' || true)")
    rm -f "$out"
    docker rm -f "$name" >/dev/null
  done
  log "walk-through peaks (2 GB container, 1 CPU; kernels kept = JupyterLab's default):"
  printf '    %s\n' "${summary[@]}"
fi
log "done (status $status)"
exit "$status"
