"The synthetic AVE generator: real decodable mp4 files, the real annotation format, labels that match the content."
import subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import av
from avbt_tacma.ave import read_annotations, label_matrix, CATEGORIES, T_SEGMENTS
from avbt_tacma.core import load_json, AVBTError
from avbt_tacma.synth import make_synthetic, COLOURS, video_ids

N, SEED, SIZE = 12, 3, 64

@pytest.fixture(scope='module')
def ds(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp('synth') / 'a', videos=N, seed=SEED, size=SIZE, workers=2,
                          progress=False)

@pytest.fixture(scope='module')
def meta(ds): return load_json(ds / 'synth_meta.json')

def decode(path):
    "Frames [F, H, W, 3] uint8, mono audio float32, sample rate, container duration (s)."
    with av.open(str(path)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1, path
        dur = c.duration / 1e6
        assert c.streams.video[0].codec_context.name == 'h264' and c.streams.audio[0].codec_context.name == 'aac'
        frames = np.stack([f.to_ndarray(format='rgb24') for f in c.decode(video=0)])
    with av.open(str(path)) as c:
        fs = list(c.decode(audio=0))
        audio = np.concatenate([f.to_ndarray().mean(0) if f.format.is_planar else f.to_ndarray().reshape(-1)
                                for f in fs])
        sr = fs[0].sample_rate
    return frames, audio, sr, dur

@pytest.fixture(scope='module')
def clips(ds, meta): return {v['video_id']: decode(ds / 'AVE' / f"{v['video_id']}.mp4") for v in meta['videos']}

def test_layout_and_decoding(ds, meta, clips):
    files = sorted(p.name for p in (ds / 'AVE').iterdir())
    assert files == sorted(f"{v['video_id']}.mp4" for v in meta['videos']) and len(files) == N
    for vid, (frames, audio, sr, dur) in clips.items():
        assert abs(dur - 10) < 0.05, (vid, dur)
        assert frames.shape == (160, SIZE, SIZE, 3), frames.shape      # 16 fps x 10 s
        assert sr == 16000 and abs(len(audio) - 160000) <= 2048, len(audio)
    assert not list(ds.glob('.*')), 'temporary or marker files left behind'

def test_annotations_match_meta(ds, meta):
    recs = read_annotations(ds / 'Annotations.txt')
    assert (ds / 'Annotations.txt').read_text().splitlines()[0] == 'Category&VideoID&Quality&StartTime&EndTime'
    assert len(recs) == N
    y = label_matrix(recs).argmax(-1)
    for r, v, lab in zip(recs, meta['videos'], y):
        assert (r.video_id, r.category, r.start, r.end) == (v['video_id'], CATEGORIES[v['cls']], v['start'], v['end'])
        ev = np.array(v['visible']) & np.array(v['audible'])
        # event = visible AND audible
        assert ev.tolist() == v['event'] and (lab != 28).astype(int).tolist() == v['event']
        assert set(lab.tolist()) <= {v['cls'], 28}
        assert len(r.video_id) == 11 and r.video_id.replace('-', '').replace('_', '').isalnum()
    assert {r.category for r in recs} <= set(CATEGORIES[:10])
    splits = {s: read_annotations(ds / f'{s}Set.txt') for s in ('train', 'val', 'test')}
    assert sorted(r.line() for s in splits.values() for r in s) == sorted(r.line() for r in recs)   # a partition
    assert (len(splits['train']), len(splits['val']), len(splits['test'])) == (10, 1, 1)

def test_same_seed_same_bytes_any_workers(ds, tmp_path):
    b = make_synthetic(tmp_path / 'b', videos=N, seed=SEED, size=SIZE, workers=1, progress=False)
    for name in ('Annotations.txt', 'trainSet.txt', 'valSet.txt', 'testSet.txt', 'synth_meta.json'):
        assert (ds / name).read_bytes() == (b / name).read_bytes(), name
    for p in (ds / 'AVE').glob('*.mp4'): assert p.read_bytes() == (b / 'AVE' / p.name).read_bytes(), p.name

def test_other_seed_differs(ds, meta, tmp_path):
    c = make_synthetic(tmp_path / 'c', videos=4, seed=SEED + 1, size=32, workers=2, progress=False)
    m2 = load_json(c / 'synth_meta.json')
    assert {v['video_id'] for v in m2['videos']}.isdisjoint(v['video_id'] for v in meta['videos'])
    strip = lambda m: [(v['cls'], v['visible'], v['audible'], v['f0']) for v in m['videos']]
    assert strip(m2) != strip(meta)[:4]
    assert m2['classes'] == meta['classes']          # class identity does not depend on the seed

def test_background_fraction_and_balance():
    from avbt_tacma.synth import SynthConfig, plan_video
    cfg = SynthConfig(videos=2000, seed=0)
    ev = np.array([plan_video(cfg, i, i % 10)['event'] for i in range(2000)])
    assert abs((1 - ev.mean()) - 0.17) < 0.02
    assert 0.6 < (ev.sum(1) == 10).mean() < 0.72            # two thirds of the clips are all event, as in AVE

def test_sound_matches_labels(meta, clips):
    ("The spectrum peaks at the class's pitch exactly where the class is audible (segments with a distracting sound "
     "aside).")
    for v in meta['videos']:
        _, audio, sr, _ = clips[v['video_id']]
        S = np.abs(np.fft.rfft(audio[:T_SEGMENTS * sr].reshape(T_SEGMENTS, sr), axis=1)) ** 2   # 1-Hz bins per segment
        d = np.abs(np.fft.rfftfreq(sr, 1 / sr) - v['f0']) / v['f0']
        bw = 0.1 if meta['classes'][v['cls']]['audio']['timbre'] == 'noise' else 0.05
        peak = S[:, d < bw].mean(1) / S[:, (d > 0.15) & (d < 0.3)].mean(1)     # power at the pitch / power beside it
        aud = np.array(v['audible'], bool)
        clean = ~np.isin(np.arange(T_SEGMENTS),
                         [t for d in v['distractors'] if d['modality'] == 'audio' for t in d['segments']])
        if (aud & clean).any(): assert peak[aud & clean].min() > 10, (v['video_id'], peak.round(1))
        if (~aud & clean).any(): assert peak[~aud & clean].max() < 3, (v['video_id'], peak.round(1))

def test_object_matches_labels(meta, clips):
    "Pixels of the class's colour are present exactly in the segments where its object is visible."
    for v in meta['videos']:
        frames = clips[v['video_id']][0].astype(np.float32)
        spec = meta['classes'][v['cls']]['visual']
        px = (np.linalg.norm(frames - np.float32(COLOURS[spec['colour']]),
                             axis=-1) < 60).reshape(T_SEGMENTS, 16, -1).sum(-1)
        px = px[:, [4, 8, 12]].mean(1)
        vis = np.array(v['visible'], bool)
        same = [d for d in v['distractors'] if d['modality'] == 'visual'
                and meta['classes'][d['cls']]['visual']['colour'] == spec['colour']]
        clean = ~np.isin(np.arange(T_SEGMENTS), [t for d in same for t in d['segments']])
        if vis.any(): assert px[vis].min() > 0.004 * SIZE * SIZE, (v['video_id'], px)
        if (~vis & clean).any(): assert px[~vis & clean].max() < 0.001 * SIZE * SIZE, (v['video_id'], px)

def test_resume_and_refusal(tmp_path):
    d = make_synthetic(tmp_path / 'r', videos=3, seed=0, size=32, workers=1, progress=False)
    clip = sorted((d / 'AVE').glob('*.mp4'))[0]; data = clip.read_bytes(); clip.unlink()
    make_synthetic(d, videos=3, seed=0, size=32, workers=1, progress=False)          # a killed run resumes
    assert clip.read_bytes() == data
    with pytest.raises(AVBTError, match='other settings'): make_synthetic(d, videos=3, seed=1, size=32, progress=False)
    make_synthetic(d, videos=2, seed=1, size=32, workers=1, force=True, progress=False)
    assert len(list((d / 'AVE').glob('*.mp4'))) == 2 and len(read_annotations(d / 'Annotations.txt')) == 2
    (d / 'AVE' / 'realvideo01.mp4').write_bytes(b'not ours')        # a file we did not write is never touched
    with pytest.raises(AVBTError,
                       match='did not write'): make_synthetic(d, videos=3, seed=0, size=32, force=True, progress=False)
    assert (d / 'AVE' / 'realvideo01.mp4').read_bytes() == b'not ours'

def run(*args):
    return subprocess.run([sys.executable, '-m', 'avbt_tacma.cli', *args], capture_output=True, text=True, timeout=300)

def test_cli(tmp_path, capsys):
    r = run('synth', '--help')                        # the real entry point, in a fresh process
    assert r.returncode == 0 and '--videos' in r.stdout and '--seed' in r.stdout
    from avbt_tacma.cli import main                   # the rest in-process: importing every command is slow
    for bad, msg in ((['--videos', '0'], 'videos must be at least 1'),
                     (['--classes', '99'], 'classes must be between 2 and 28'),
                     (['--size', '33'], 'size must be'), (['--noise', '-1'], 'noise must be'),
                     (['--workers', '0'], 'workers must be')):
        assert main(['synth', '--out', str(tmp_path / 'x'), *bad]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.startswith('avbt synth: error:') and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'x').exists()             # nothing written for bad settings
    assert main(['synth', '--out', str(tmp_path / 'y'), '--videos', '2', '--size', '32', '--workers', '1',
                 '--classes', '3']) == 0
    assert 'wrote 2 clips' in capsys.readouterr().out
    assert {x.category for x in read_annotations(tmp_path / 'y' / 'Annotations.txt')} <= set(CATEGORIES[:3])
