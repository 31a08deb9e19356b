"""No silent NaN, and odd files are one line: decoded audio, the first training steps of AV-BT and of the heads,
checkpoints loaded for inference, FIFOs, symbolic-link loops, over-long ids, split overlaps, worker counts."""
import os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
from avbt_tacma.core import AVBTError, save_checkpoint, usable_cores
from avbt_tacma.ave import Record, write_annotations
from avbt_tacma.video import write_test_clip, decode_clip, ClipError
from avbt_tacma.prepare import prepare, open_cache

CLI = "import sys; from avbt_tacma.cli import main; sys.exit(main(sys.argv[1:]))"
TINY = dict(small_channels=(8, 8, 16, 16), d_l=16, proj_dims=(32, 32, 32), image_size=32)


def avbt(*args, timeout=300):
    r = subprocess.run([sys.executable, '-c', CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def one_line_error(res, cmd, *needles):
    rc, _, err = res
    lines = [l for l in err.splitlines() if l.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith(f'avbt {cmd}: error: '), err
    for n in needles: assert n in lines[0], (n, err)


def nan_clip(path, seconds=10, sr=16000, bad=np.nan):
    "A real video file whose float-PCM audio track holds one NaN (or Inf) sample (AAC cannot carry one)."
    import av
    with av.open(str(path), 'w', format='mov') as c:
        v = c.add_stream('libx264', rate=10)
        v.height = v.width = 32
        v.pix_fmt = 'yuv420p'
        a = c.add_stream('pcm_f32le', rate=sr, layout='mono')
        for i in range(seconds * 10):
            f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 80, np.uint8), format='rgb24')
            f.pts = i
            c.mux(v.encode(f))
        x = (0.1 * np.sin(np.arange(seconds * sr) / 5)).astype(np.float32)
        x[sr // 2] = bad
        for k in range(0, len(x), 1024):
            fr = av.AudioFrame.from_ndarray(x[None, k:k + 1024], format='flt', layout='mono')
            fr.sample_rate, fr.pts = sr, k
            c.mux(a.encode(fr))
        c.mux(v.encode())
        c.mux(a.encode())
    return Path(path)


@pytest.mark.parametrize('bad', [np.nan, np.inf])
def test_decoded_audio_with_nan_or_inf_is_a_clip_error(tmp_path, bad):
    p = nan_clip(tmp_path / 'n.mp4', seconds=2, bad=bad)
    with pytest.raises(ClipError) as e: decode_clip(p, seconds=2)
    assert e.value.problem == 'non_finite' and '1 NaN or Inf sample' in str(e.value)


@pytest.fixture(scope='module')
def hostile_root(tmp_path_factory):
    "An AVE root: 2 good clips, a NaN-audio clip, a FIFO, a symbolic-link loop and a 300-character id."
    r = tmp_path_factory.mktemp('ave')
    (r / 'AVE').mkdir()
    ids = ['good0', 'nanaudio', 'fifo', 'loop', 'x' * 300, 'good1']
    for v in ('good0', 'good1'): write_test_clip(r / 'AVE' / f'{v}.mp4', seconds=10, size=(48, 32), fps=16, seed=1)
    nan_clip(r / 'AVE' / 'nanaudio.mp4')
    os.mkfifo(r / 'AVE' / 'fifo.mp4')
    (r / 'AVE' / 'loop.mp4').symlink_to(r / 'AVE' / 'loop.mp4')
    recs = [Record('Bark', v, 'good', 0, 10) for v in ids]
    write_annotations(recs, r / 'Annotations.txt')
    write_annotations(recs, r / 'trainSet.txt')
    return r


def test_prepare_skips_each_bad_clip_with_its_reason_and_keeps_the_good(hostile_root, tmp_path):
    rc, out, err = avbt('prepare', '--ave-root', hostile_root, '--out', tmp_path / 'c', '--size', 32, '--workers', 1,
                        '--quiet', timeout=120)                               # a FIFO would block a reader: it must not
    assert rc == 0 and 'Traceback' not in err, err
    rep = {r['video_id'][:10]: r for r in open_cache(tmp_path / 'c').report}
    assert {k: r['problem'] for k, r in rep.items()} == {'nanaudio': 'non_finite', 'fifo': 'not_file',
                                                        'loop': 'unreadable', 'x' * 10: 'bad_id'}
    assert 'not a regular file' in rep['fifo']['reason'] and 'loop of symbolic links' in rep['loop']['reason']
    assert '300 bytes long' in rep['x' * 10]['reason'] and 'NaN or Inf' in rep['nanaudio']['reason']
    cache = open_cache(tmp_path / 'c')
    assert [cache.video_id(r) for r in cache.available] == ['good0', 'good1']
    assert all(np.isfinite(cache.logmel(r)).all() for r in cache.available)


def test_prepare_refuses_a_row_in_two_splits_and_lowers_workers(hostile_root, tmp_path):
    import shutil
    r = tmp_path / 'ave'
    shutil.copytree(hostile_root, r, symlinks=True, ignore=shutil.ignore_patterns('fifo.mp4'))
    recs = [Record('Bark', 'good0', 'good', 0, 10), Record('Bark', 'good1', 'good', 0, 10)]
    write_annotations(recs, r / 'Annotations.txt')
    write_annotations(recs, r / 'trainSet.txt')
    write_annotations(recs[1:], r / 'testSet.txt')
    one_line_error(avbt('prepare', '--ave-root', r, '--out', tmp_path / 'c'), 'prepare',
                   '1 row(s) in both train and test (the first is row 1)')
    assert not (tmp_path / 'c' / 'clips').exists() or not list((tmp_path / 'c' / 'clips').iterdir())
    (r / 'testSet.txt').unlink()
    rc, out, err = avbt('prepare', '--ave-root', r, '--out', tmp_path / 'c', '--size', 32, '--workers', 64, '--quiet')
    assert rc == 0 and f'--workers 64 lowered to {usable_cores()}' in err and '2 of 2 rows' in out, err


def _nan_memory_cache():
    from avbt_tacma.datasets import MemoryCache
    c = MemoryCache.synthetic(n=4, hw=32)
    c._logmel[2, 5, 10, 3] = np.nan
    return c


def test_avbt_training_stops_at_the_first_nan_loss_naming_the_clip(tmp_path):
    from avbt_tacma.avbt import AVBTConfig
    from avbt_tacma.train_avbt import train_avbt
    cfg = AVBTConfig.preset('synthetic', **TINY, epochs=2, batch_size=4, warmup_epochs=1)
    with pytest.raises(AVBTError) as e:
        train_avbt(_nan_memory_cache(), tmp_path / 'run', cfg, device='cpu', workers=0, progress=False)
    msg = str(e.value)
    assert '\n' not in msg and msg.startswith('training stopped at epoch 1, step 1: the loss is nan')
    assert 'the log-mel of 1 clip(s) of this batch hold NaN or Inf (rows 2)' in msg
    assert not (tmp_path / 'run' / 'avbt.pt').exists() and not (tmp_path / 'run' / 'checkpoint.pt').exists()


def test_head_training_stops_at_the_first_nan_loss(tmp_path):
    from avbt_tacma.features import FeatureSet
    from avbt_tacma.train_heads import train_head
    rng = np.random.default_rng(0)
    y = np.eye(29, dtype=np.float32)[rng.integers(0, 29, (8, 10))]
    a = rng.normal(size=(8, 10, 6)).astype(np.float32)
    a[3, 2, 1] = np.inf                                           # an in-memory set: not read through load_features
    fs = FeatureSet(a, rng.normal(size=(8, 10, 6)).astype(np.float32), y, {'train': np.arange(6), 'val': [6],
                                                                            'test': [7]})
    with pytest.raises(AVBTError, match=r'training stopped at epoch 1, batch 1: the loss is nan; the audio features'):
        train_head(fs, 'tacma', epochs=2, batch_size=8, device='cpu', out=tmp_path / 'h', progress=False)
    assert not list((tmp_path / 'h').glob('*.pt')) if (tmp_path / 'h').exists() else True
    fs.audio[3, 2, 1] = 0                                         # finite inputs, absurd learning rate
    with pytest.raises(AVBTError, match=r"batch 2: the loss is nan although this batch's inputs are finite \(the lea"):
        train_head(fs, 'tacma', epochs=30, batch_size=2, lr=1e30, device='cpu', out=tmp_path / 'h2', progress=False)


def _pipeline_checkpoint(path, bad: str):
    "An 'avbt_tacma' checkpoint whose head weights hold NaN (bad='nan') or do not fit its config (bad='shape')."
    from avbt_tacma.avbt import AVBTConfig, AVBT
    from avbt_tacma.train_heads import build_head
    cfg = AVBTConfig.preset('synthetic', **TINY)
    head = build_head('tacma', cfg.d_l, cfg.d_l)
    hs = {k: v.clone() for k, v in head.state_dict().items()}
    if bad == 'nan': hs[next(k for k, v in hs.items() if v.is_floating_point())].fill_(float('nan'))
    else: hs = {k: v[..., :1] if v.ndim else v for k, v in hs.items()}
    config = {'avbt': {**cfg.to_dict(), 'weights': 'none'}, 'head': {'head': 'tacma', 'd_a': cfg.d_l, 'd_v': cfg.d_l},
              'prepare': {'frame_size': 32}}
    return save_checkpoint(path, 'avbt_tacma', config, {'avbt_state': AVBT(cfg, download=False).state_dict(),
                                                        'head_state': hs})


@pytest.mark.parametrize('bad,needle', [('nan', "the model's weights hold NaN or Inf"),
                                        ('shape', 'incompatible checkpoint')])
def test_localize_reports_a_checkpoint_fault_once_as_a_model_fault(tmp_path, bad, needle):
    ck = _pipeline_checkpoint(tmp_path / 'm.pt', bad)
    vids = [write_test_clip(tmp_path / f'v{i}.mp4', seconds=2, size=(32, 32)) for i in range(3)]
    one_line_error(avbt('localize', *vids, '--checkpoint', ck, '--out', tmp_path / 'out', '--no-figure'), 'localize',
                   str(ck), needle)
    assert not (tmp_path / 'out').exists() or not list((tmp_path / 'out').glob('*.json'))


@pytest.mark.parametrize('fault,needle', [('no_model', "no 'model' weights"),
                                          ('mismatch', "the weights do not fit the checkpoint's model config"),
                                          ('nan', "the model's weights hold NaN or Inf"),
                                          ('no_config', 'no AV-BT model config')])
def test_extract_checkpoint_faults_are_one_line(tmp_path, synthetic_cache, fault, needle):
    from avbt_tacma.avbt import AVBTConfig, AVBT
    cfg = AVBTConfig.preset('synthetic', **TINY)
    state = AVBT(cfg, download=False).state_dict()
    model_cfg = cfg.to_dict()
    if fault == 'mismatch': model_cfg['d_l'] = 2 * cfg.d_l
    if fault == 'nan': state = {k: v.float() * float('nan') if v.is_floating_point() else v for k, v in state.items()}
    config = {} if fault == 'no_config' else {'model': model_cfg}
    ck = save_checkpoint(tmp_path / 'avbt.pt', 'avbt', config, {} if fault == 'no_model' else {'model': state})
    one_line_error(avbt('extract', '--checkpoint', ck, '--data', synthetic_cache, '--out', tmp_path / 'f.h5',
                        '--device', 'cpu', '--workers', 0), 'extract', str(ck), needle)
    assert not (tmp_path / 'f.h5').exists()


def test_head_checkpoint_with_nan_weights_is_refused_for_evaluation(tmp_path):
    from avbt_tacma.evaluate import load_run
    ck = save_checkpoint(tmp_path / 'tacma_seed0.pt', 'head', {'head': 'tacma'},
                         {'model': {'w': torch.tensor([1.0, float('nan')])}}, result={'val_acc': 0.5})
    for p in (ck, tmp_path):
        with pytest.raises(AVBTError, match=r"tacma_seed0.pt: the model's weights hold NaN or Inf \(1 tensor"):
            load_run(p)
