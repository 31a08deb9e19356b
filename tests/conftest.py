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

def run_main(capsys, *argv):
    "`avbt ARGV` in this process: (status, stdout, stderr)."
    from avbt_tacma.cli import main
    try: rc = main([str(a) for a in argv])
    except SystemExit as e: rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: long end-to-end test (deselect with -m "not slow")')

@pytest.fixture(autouse=True)
def _torch_threads_restored():
    "A test that sets torch's thread count does not leak it: bit-exact comparisons (resume vs an uninterrupted run)"
    " need both runs at the same count, whichever xdist worker built the shared reference."
    import torch
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)



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


# Headless Chromium (Debian's `chromium`, driven by playwright without its own browser download) for the pages a
# reader opens: the docs site and a run's summary.html. Tests that use it skip, saying why, where chromium is absent.
CHROMIUM = next((p for p in ('/usr/bin/chromium', '/usr/bin/chromium-browser') if os.path.exists(p)), None)

def browse(urls, math: bool = False) -> dict:
    """Open each of `urls` in headless Chromium; {url: {'images': [(src, loaded)], 'errors': [...], 'math': number
    of typeset equations, 'text': visible text}}. With `math`, wait for MathJax to finish where a page loads it."""
    if CHROMIUM is None: pytest.skip('headless Chromium not installed (apt-get install chromium; .ci/run does)')
    from playwright.sync_api import sync_playwright
    res = {}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
        try:
            for url in urls:
                pg, errors = b.new_page(), []
                pg.on('console', lambda m, e=errors: e.append(m.text) if m.type == 'error' else None)
                pg.on('pageerror', lambda x, e=errors: e.append(str(x)))
                pg.on('requestfailed', lambda r, e=errors: e.append(f"failed to load {r.url}"))
                pg.goto(url); pg.wait_for_load_state('load')
                if math and pg.evaluate("!!window.MathJax"):
                    pg.wait_for_function("window.MathJax.startup && window.MathJax.startup.promise", timeout=20000)
                    pg.evaluate("window.MathJax.startup.promise")
                res[url] = dict(errors=errors, text=pg.evaluate("document.body.innerText"),
                                math=pg.evaluate("document.querySelectorAll('mjx-container').length"),
                                images=pg.evaluate("[...document.images].map(i => [i.getAttribute('src').slice(0, 80),"
                                                   " i.complete && i.naturalWidth > 0])"))
                pg.close()
        finally: b.close()
    return res
