"benchmarks/gpu_check.sh --dry-run: the one-call GPU cost check runs end to end (tiny, on a CPU) and prints its table."

import json, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    r = subprocess.run(
        ['bash', str(ROOT / 'benchmarks' / 'gpu_check.sh'), '--dry-run', '--work', str(tmp_path / 'w')],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert '== gpu_check:' in r.stdout and 'DRY RUN' in r.stdout
    res = json.loads(next(l for l in r.stdout.splitlines() if l.startswith('JSON '))[5:])
    sections = {row[0] for row in res['rows']}
    assert sections == {'avbt', 'flops', 'data', 'rehearsal', 'tacma', 'project'}, sections
    failed = [row for row in res['rows'] if 'failed' in row[2].lower()]
    assert not failed, failed
    for k in ('avbt', 'flops', 'synth', 'prepare', 'loader', 'head_s'):
        assert res['results'].get(k), k
    assert any(row[1] == 'total, one GPU' and row[3].startswith('projected') for row in res['rows'])
    rh = next(row for row in res['rows'] if row[0] == 'rehearsal')  # guarded: never a failure of the script
    assert rh[2] in ('not available', 'available; not run in a dry run'), rh
