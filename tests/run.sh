#!/usr/bin/env bash
# The project's test command (README): sync, cleanliness, notebook tests, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== 0/4 compiled dependencies load and work (tests/check_install.py)"
python tests/check_install.py
echo "== 1/4 package in sync with the notebooks (nbdev_export; git diff --exit-code)"
nbdev_export
git diff --exit-code -- avbt_tacma || { echo "avbt_tacma/ is out of sync with nbs/: run nbdev_export and commit"; exit 1; }
test -z "$(git status --porcelain -- avbt_tacma)" || { git status --porcelain -- avbt_tacma; echo "nbdev_export created files that are not committed"; exit 1; }
echo "== 2/4 notebooks clean (nbdev_clean; git diff --exit-code)"
nbdev_clean
git diff --exit-code -- nbs || { echo "notebooks in nbs/ are not clean: run nbdev_clean and commit"; exit 1; }
echo "== 3/4 nbdev_test"
nbdev_test --n_workers 2 --timing
echo "== 4/4 pytest (2 workers, pytest-xdist; the 15 slowest tests listed; pass -n 0 to run in one process)"
python -m pytest -q -n 2 --durations=15 tests "$@"
