import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
META = ROOT.parent / 'shared' / 'ave-meta'
if not META.exists() and os.environ.get('AVE_META'): META = Path(os.environ['AVE_META'])

@pytest.fixture(scope='session')
def ave_meta():
    "The real AVE metadata folder (../shared/ave-meta or $AVE_META); tests using it skip when it is absent."
    if not (META / 'Annotations.txt').exists(): pytest.skip('real AVE metadata (../shared/ave-meta) not available')
    return META

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long end-to-end test (deselect with -m "not slow")')



# Shared synthetic data for the test files that need a real prepared cache: 12 clips written as mp4 files by
# `make_synthetic`, decoded by `prepare` (the real data's path), and a tiny AV-BT trained on them. Each is built once
# per run: under pytest-xdist the first worker that needs it builds it and the others wait for it. Treat as read only.
SYNTH = dict(videos=12, seed=0, size=64)
TINY_AVBT = dict(small_channels=(8, 8, 16, 16), d_l=16, proj_dims=(32, 32, 32), image_size=32,
                 epochs=3, batch_size=2, warmup_epochs=1)

def build_once(tmp_path_factory, name: str, build) -> Path:
    "`build(path)` once for this test run (all xdist workers together); returns `path`."
    import fcntl
    root = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'): root = root.parent      # the run's folder, shared by the workers
    out, done = root / name, root / f'{name}.done'
    with open(root / f'{name}.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)                               # released when the file closes
        if not done.exists():
            build(out)
            done.touch()
    return out

@pytest.fixture(scope='session')
def synthetic_ave(tmp_path_factory):
    "An AVE-layout folder of 12 synthetic clips (real mp4 files)."
    from avbt_tacma.synth import make_synthetic
    return build_once(tmp_path_factory, 'synthetic_ave',
                      lambda out: make_synthetic(out, **SYNTH, workers=1, progress=False))

@pytest.fixture(scope='session')
def synthetic_cache(synthetic_ave, tmp_path_factory):
    "`synthetic_ave` decoded by `avbt prepare` (64 x 64 frames)."
    from avbt_tacma.prepare import prepare
    return build_once(tmp_path_factory, 'synthetic_cache',
                      lambda out: prepare(synthetic_ave, out, size=SYNTH['size'], workers=1, progress=False))

@pytest.fixture(scope='session')
def tiny_avbt(synthetic_cache, tmp_path_factory):
    "An uninterrupted AV-BT run on `synthetic_cache`: `TINY_AVBT`, CPU, seed 0, no DataLoader workers."
    from avbt_tacma.avbt import AVBTConfig
    from avbt_tacma.train_avbt import train_avbt
    cfg = AVBTConfig.preset('synthetic', **TINY_AVBT)
    def train(out): train_avbt(synthetic_cache, out, cfg, seed=0, device='cpu', workers=0, progress=False)
    return build_once(tmp_path_factory, 'tiny_avbt', train)
