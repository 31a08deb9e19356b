"""avbt train-avbt / avbt extract on a real (tiny) synthetic cache: exact resume, kill -9, the CLI, the feature file."""
import os, sys, csv, time, signal, subprocess, textwrap
from pathlib import Path
import numpy as np, pytest, torch
from avbt_tacma.avbt import AVBTConfig, AVBT
from avbt_tacma.core import AVBTError, load_checkpoint
from avbt_tacma.datasets import AVClipDataset
from avbt_tacma.features import load_features
from avbt_tacma.cli import main
from avbt_tacma.train_avbt import train_avbt, extract_features

TINY = dict(small_channels=(8, 8, 16, 16), d_l=16, proj_dims=(32, 32, 32), image_size=32)
EPOCHS, BATCH = 3, 2

def cfg(**kw): return AVBTConfig.preset('synthetic',
                                        **{**TINY, 'epochs': EPOCHS, 'batch_size': BATCH, 'warmup_epochs': 1, **kw})

@pytest.fixture(scope='module')
def cache(synthetic_cache): return synthetic_cache          # 12 synthetic mp4 clips decoded by `prepare` (conftest.py)

@pytest.fixture(scope='module')
def reference(tiny_avbt):
    "An uninterrupted run: 3 epochs, no DataLoader workers (conftest.py); `cfg()` must be its configuration."
    assert AVBTConfig.from_dict(load_checkpoint(tiny_avbt / 'avbt.pt', kind='avbt')['config']['model']) == cfg()
    return tiny_avbt

def weights(run): return load_checkpoint(Path(run) / 'avbt.pt', kind='avbt')['model']

def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    bad = [k for k in a if not torch.equal(a[k], b[k])]
    assert not bad, f"weights differ in {bad}"

def losses(run):
    with open(Path(run) / 'log.csv',
              newline='') as f: return [(int(r['step']), float(r['loss'])) for r in csv.DictReader(f)]

def steps_per_epoch(cache):
    from avbt_tacma.prepare import open_cache
    return len(open_cache(cache).splits['train']) // BATCH

def test_reference_run(reference, cache):
    n = steps_per_epoch(cache)
    ck = load_checkpoint(reference / 'checkpoint.pt', kind='avbt')
    assert (ck['epoch'], ck['step']) == (EPOCHS, EPOCHS * n)
    assert [s for s, _ in losses(reference)] == list(range(EPOCHS * n))
    assert all(np.isfinite(l) for _, l in losses(reference))
    init = AVBT(cfg()).state_dict()                                      # training moved the weights
    assert not torch.equal(weights(reference)['projector.0.weight'], init['projector.0.weight'])

def test_stop_after_epoch_and_resume_is_exact(reference, cache, tmp_path):
    "Stopped after epoch 1, resumed (now with 2 DataLoader workers): bit-identical weights and the same loss log."
    run = tmp_path / 'run'
    train_avbt(cache, run, cfg(), seed=0, device='cpu', workers=0, progress=False, max_steps=steps_per_epoch(cache))
    ck = load_checkpoint(run / 'checkpoint.pt', kind='avbt')
    assert ck['epoch'] == 1 and not (load_checkpoint(run / 'avbt.pt')['finished'])
    train_avbt(cache, run, None, device='cpu', workers=2, progress=False, resume=True)
    assert_same_weights(weights(run), weights(reference))
    assert losses(run) == losses(reference)

KILLABLE = textwrap.dedent('''
    import sys
    from avbt_tacma.avbt import AVBTConfig
    from avbt_tacma.train_avbt import train_avbt
    cfg = AVBTConfig.preset('synthetic', **{tiny!r}, epochs={epochs}, batch_size={batch}, warmup_epochs=1)
    train_avbt(sys.argv[1], sys.argv[2], cfg, seed=0, device='cpu', workers=1, progress=False)
''')

def test_kill9_mid_epoch_then_resume(reference, cache, tmp_path):
    ("kill -9 during epoch 2 leaves the epoch-1 checkpoint loadable; `avbt train-avbt --resume` ends on the reference "
     "weights.")
    run = tmp_path / 'run'
    code = KILLABLE.format(tiny=TINY, epochs=EPOCHS, batch=BATCH)
    p = subprocess.Popen([sys.executable, '-c', code, str(cache), str(run)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    n, deadline = steps_per_epoch(cache), time.time() + 240
    try:
        while time.time() < deadline and p.poll() is None:                # wait for a step of epoch 2 in the log
            try:
                if (run / 'checkpoint.pt').exists() and any(s > n for s, _ in losses(run)): break
            except (OSError, ValueError, KeyError): pass                   # log.csv absent or a row half-written
            time.sleep(0.02)
        assert p.poll() is None, (f"the training process ended before it could be killed: "
                                  f"{p.stderr.read().decode()[-2000:]}")
        os.kill(p.pid, signal.SIGKILL)
    finally:
        if p.poll() is None: p.kill()
        p.wait()
    assert p.returncode == -signal.SIGKILL and not (run / 'avbt.pt').exists()
    ck = load_checkpoint(run / 'checkpoint.pt', kind='avbt')              # the last complete checkpoint loads
    assert ck['epoch'] >= 1 and ck['step'] == ck['epoch'] * n
    assert main(['train-avbt', '--data', str(cache), '--out', str(run), '--resume', '--device', 'cpu', '--workers',
                 '1']) == 0
    assert_same_weights(weights(run), weights(reference))
    assert losses(run) == losses(reference)                               # rows after the checkpoint were rewritten
    assert not list(run.glob('.checkpoint.pt.*'))

def test_refuses_to_overwrite_and_to_resume_with_other_settings(reference, cache, capsys):
    args = ['train-avbt', '--data', str(cache), '--out', str(reference), '--device', 'cpu']
    assert main(args) == 2
    assert 'already holds a checkpoint' in capsys.readouterr().err
    assert main(args + ['--resume', '--seed', '5']) == 2
    assert 'differ from the checkpoint (seed)' in capsys.readouterr().err
    with pytest.raises(AVBTError, match='model.batch_size'):
        train_avbt(cache, reference, cfg(batch_size=4), device='cpu', resume=True, progress=False)

def test_cli_bad_parameters(cache, tmp_path, capsys):
    "Wrong parameters end with status 2 and a one-line message, before any work is done."
    def err(*args):
        rc = main(['train-avbt', *args]); return rc, capsys.readouterr().err.strip()
    out = ['--out', str(tmp_path / 'r')]
    for args, msg in [(['--data', str(cache), *out, '--config', 'nope'], "unknown AV-BT preset 'nope'"),
                      (['--data', str(tmp_path / 'missing'), *out], 'cache folder not found'),
                      (['--data', str(cache), *out, '--aug', 'crop,wobble'], "unknown augmentation(s) ['wobble']"),
                      (['--data', str(cache), *out, '--batch-size', '0'], '--batch-size must be at least 1'),
                      (['--data', str(cache), *out, '--batch-size', '64'], 'fewer than one batch of 64')]:
        rc, e = err(*args)
        assert rc == 2 and msg in e and len(e.splitlines()) == 1, (args, e)
    assert not (tmp_path / 'r' / 'checkpoint.pt').exists()
    r = subprocess.run([sys.executable, '-m', 'avbt_tacma.cli', 'train-avbt', '--data', str(cache), *out, '--config',
                        'nope'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and 'nope' in r.stderr
    assert main(['extract', '--checkpoint', str(tmp_path / 'none.pt'), '--data', str(cache), '--out',
                 str(tmp_path / 'f.h5')]) == 2
    assert 'checkpoint not found' in capsys.readouterr().err

def test_extract(reference, cache, tmp_path):
    from avbt_tacma.prepare import open_cache
    c = open_cache(cache)
    assert main(['extract', '--checkpoint', str(reference / 'avbt.pt'), '--data', str(cache), '--out',
                 str(tmp_path / 'f.h5'),
                 '--device', 'cpu', '--workers', '0', '--batch-size', '5']) == 0
    fs = load_features(tmp_path / 'f.h5')
    n = int(np.sum(c.available)) if np.asarray(c.available).dtype == bool else len(c.available)
    assert fs.audio.shape == fs.visual.shape == (n, 10, 16) and fs.labels.shape == (n, 10, 29)
    assert fs.video_ids == [c.video_id(r) for r in range(n)]
    for s in ('train', 'val',
              'test'): assert list(fs.splits[s]) == list(c.splits[s])   # all clips decoded: rows = cache rows
    assert np.array_equal(fs.labels.argmax(-1), np.stack([c.labels(r) for r in range(n)]))
    assert fs.meta['encoder'] == 'avbt' and fs.meta['config']['model']['d_l'] == 16
    # the stored features are the encoders' output on the evaluation input (middle frame, no augmentation)
    ck = load_checkpoint(reference / 'avbt.pt'); model = AVBT(AVBTConfig.from_dict(ck['config']['model']))
    model.load_state_dict(ck['model']); model.eval()
    ds = AVClipDataset(cache, 'test', train=False, size=32); item = ds[0]
    with torch.no_grad(): f_a, f_v = model.encode(item['logmel'][None], item['frames'][None])
    np.testing.assert_allclose(fs.audio[item['row']], f_a[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(fs.visual[item['row']], f_v[0].numpy(), atol=1e-5)
    sp = load_features(extract_features(reference / 'avbt.pt', cache, tmp_path / 's.h5', device='cpu', spatial=True,
                                        progress=False))
    assert sp.spatial and sp.visual.shape[:2] == (n, 10) and sp.visual.shape[-1] == 16 and sp.meta['spatial']
    np.testing.assert_allclose(sp.audio, fs.audio, atol=1e-6)
