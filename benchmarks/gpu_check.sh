#!/usr/bin/env bash
# Every figure of "What a paper-scale run costs" (README), measured in one call on a GPU machine (about 9 minutes on
# one H200, 16 cores), printed as one table. Installs nothing, needs no network, uses random weights.
#   bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log
#   bash benchmarks/gpu_check.sh --dry-run          # tiny, on a CPU, a minute or two: checks the script itself
# Options are passed to benchmarks/gpu_check.py (--budget SECONDS, --work DIR, --keep).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
command -v "$PY" >/dev/null || PY=python3
exec "$PY" benchmarks/gpu_check.py "$@"
