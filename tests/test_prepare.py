"""`avbt prepare` end to end: good and broken clips, the report, kill -9 and resume, the reader API."""
import os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
from avbt_tacma.core import AVBTError
from avbt_tacma.ave import Record, write_annotations
from avbt_tacma.video import write_test_clip, read_frame_number, frame_times
from avbt_tacma.prepare import prepare, open_cache, clip_file

N_GOOD = 12
BROKEN = {'empty': 'skipped', 'trunc': 'skipped', 'mute': 'skipped', 'short': 'padded', 'gone': 'skipped'}
PROBLEM = {'empty': 'empty', 'trunc': 'corrupt', 'mute': 'no_audio', 'short': 'short', 'gone': 'missing'}


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    ("An AVE root: 12 good 10-s clips, a zero-byte file, a truncated mp4, a clip without audio, a 4-s clip, a missing "
     "file.")
    r = tmp_path_factory.mktemp('ave')
    good = [f'good{i:02d}' for i in range(N_GOOD)]
    for i, v in enumerate(good):
        write_test_clip(r / 'AVE' / f'{v}.mp4', seconds=10, size=(160, 120), fps=25 if i % 2 else 30, seed=i,
                        sample_rate=44100 if i % 3 else 16000, channels=2 if i % 2 else 1)
    (r / 'AVE' / 'empty.mp4').touch()
    data = (r / 'AVE' / 'good00.mp4').read_bytes()
    (r / 'AVE' / 'trunc.mp4').write_bytes(data[:len(data) * 2 // 3])
    write_test_clip(r / 'AVE' / 'mute.mp4', seconds=10, size=(96, 64), audio=False)
    write_test_clip(r / 'AVE' / 'short.mp4', seconds=4, size=(96, 64))
    recs = [Record('Bark' if i % 2 else 'Church bell', v, 'good', i % 5, 5 + i % 6) for i, v in enumerate(good)]
    recs.insert(3, Record('Bark', 'empty', 'good', 0, 10))
    recs.insert(6, Record('Bark', 'trunc', 'good', 0, 10))
    recs += [Record('Bark', 'mute', 'good', 0, 10), Record('Bark', 'short', 'good', 1, 4),
             Record('Bark', 'gone', 'good', 0, 10),
             Record('Clock', 'good05', 'good', 2, 3)]                      # a video annotated twice (as in AVE)
    write_annotations(recs, r / 'Annotations.txt')
    write_annotations(recs[:12], r / 'trainSet.txt'); write_annotations(recs[12:15], r / 'valSet.txt')
    write_annotations(recs[15:], r / 'testSet.txt')
    return r


@pytest.fixture(scope='module')
def full(root, tmp_path_factory):
    "An uninterrupted run with 2 worker processes, forked from a process whose torch thread pool is running."
    import torch
    torch.set_num_threads(2); float((torch.randn(300, 300) @ torch.randn(300, 300)).sum())
    out = tmp_path_factory.mktemp('cache_full')
    return out, prepare(root, out, workers=2, progress=False)


def test_prepare_keeps_good_clips_and_reports_bad_ones(root, full):
    out, s = full
    cache = open_cache(out)
    rows = {r.video_id: i for i, r in enumerate(cache.records)}
    assert len(cache.records) == N_GOOD + 6
    good_rows = [i for i, r in enumerate(cache.records) if r.video_id.startswith('good')]
    assert cache.available.tolist() == sorted(good_rows + [rows['short']])
    assert (s['kept'], s['skipped'], s['padded'], s['new']) == (N_GOOD + 2, 4, 1, N_GOOD + 1)
    assert s['problems'] == {'empty': 1, 'corrupt': 1, 'no_audio': 1, 'missing': 1}
    rep = {r['video_id']: r for r in cache.report}
    assert set(rep) == set(BROKEN)
    for v, st in BROKEN.items():
        assert (rep[v]['row'], rep[v]['status'], rep[v]['problem']) == (rows[v], st, PROBLEM[v]), rep[v]
    assert 'padded' in rep['short']['reason'] and '4.0' in rep['short']['reason']
    assert 'no audio stream' in rep['mute']['reason'] and '0 bytes' in rep['empty']['reason']
    assert (out / 'report.csv').read_text().count('\n') == len(BROKEN) + 1
    assert s['line'].startswith(f"prepare: {N_GOOD + 2} of {N_GOOD + 6} rows")


def test_cache_content(full):
    out, _ = full
    cache = open_cache(out)
    r = [i for i, rec in enumerate(cache.records) if rec.video_id == 'good01'][0]      # 25 fps source
    f = cache.frames(r)
    assert f.shape == (160, 256, 256, 3) and f.dtype == np.uint8
    assert [read_frame_number(x) for x in f] == np.floor(frame_times() * 25).astype(int).tolist()
    r0 = [i for i, rec in enumerate(cache.records) if rec.video_id == 'good00'][0]    # 30 fps source
    assert [read_frame_number(x) for x in cache.frames(r0, [0, 16, 159])] == [0, 30, 299 % 256]   # 8-bit counter
    np.testing.assert_array_equal(cache.frames(r, [40, 3, 40]), f[[40, 3, 40]])
    lm = cache.logmel(r)
    assert lm.shape == (10, 96, 64) and lm.dtype == np.float32
    w = cache.waveform(r)
    assert w.shape == (160000,) and 0.1 < np.sqrt((w ** 2).mean()) < 0.3
    rec = cache.records[r]
    assert cache.labels(r).tolist() == [2 if rec.start <= t < rec.end else 28 for t in range(10)]
    dup = [i for i, rec in enumerate(cache.records) if rec.video_id == 'good05']
    assert len(dup) == 2 and set(dup) <= set(cache.available.tolist())
    np.testing.assert_array_equal(cache.logmel(dup[0]), cache.logmel(dup[1]))
    assert cache.labels(dup[1]).tolist() == [28, 28, 16] + [28] * 7
    short = [i for i, rec in enumerate(cache.records) if rec.video_id == 'short'][0]
    assert cache.info(short)['padded'] and cache.info(r)['padded'] is False
    assert read_frame_number(cache.frames(short, [159])[0]) == 99             # the last of 4 s x 25 fps, held
    # splits come from the split lists and only hold cached rows
    assert cache.splits['train'].tolist() == [i for i in range(12) if i in set(cache.available.tolist())]
    assert cache.splits['test'].tolist() == [i for i in range(15, 18) if i in set(cache.available.tolist())]
    with pytest.raises(AVBTError, match='not in the cache'): cache.logmel(3)
    with pytest.raises(AVBTError, match='frame numbers'): cache.frames(r, [160])


def _run_cli(root, out, *extra):
    code = "import sys; from avbt_tacma.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, '-c', code, 'prepare', '--ave-root', str(root), '--out', str(out), '--quiet', *extra]


def _same_cache(a, b):
    ca, cb = open_cache(a), open_cache(b)
    assert ca.available.tolist() == cb.available.tolist()
    assert ca.report == cb.report
    assert {k: v.tolist() for k, v in ca.splits.items()} == {k: v.tolist() for k, v in cb.splits.items()}
    import h5py
    for r in ca.available:
        with h5py.File(clip_file(a, ca.video_id(r))) as fa, h5py.File(clip_file(b, cb.video_id(r))) as fb:
            assert [bytes(x) for x in fa['jpeg'][()]] == [bytes(x) for x in fb['jpeg'][()]]
            np.testing.assert_array_equal(fa['logmel'][()], fb['logmel'][()])
            np.testing.assert_array_equal(fa['waveform'][()], fb['waveform'][()])


def test_kill_9_midway_then_resume_gives_the_same_cache(root, full, tmp_path):
    out = tmp_path / 'cache'
    p = subprocess.Popen(_run_cli(root, out, '--workers', '1'), start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None:
        done = [f for f in (out / 'clips').glob('*.h5')
                if not f.name.startswith('.')] if (out / 'clips').exists() else []
        if len(done) >= 4: break
        time.sleep(0.02)
    assert p.poll() is None, 'prepare finished before it could be killed'
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    done = sorted(f.stem for f in (out / 'clips').glob('*.h5') if not f.name.startswith('.'))
    assert 4 <= len(done) < N_GOOD + 1, done
    import h5py
    for v in done:                                            # nothing half-written under a final name
        with h5py.File(clip_file(out, v)) as f: assert len(f['jpeg']) == 160 and f['logmel'].shape == (10, 96, 64)
    partial = open_cache(out)                                 # a partial cache is readable
    assert sorted({partial.video_id(r) for r in partial.available}) == done
    (out / 'clips' / '.good11.h5.stale.h5').write_bytes(b'half a file')   # what a kill during a write leaves
    r = subprocess.run(_run_cli(root, out, '--workers', '2'), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"({N_GOOD + 1 - len(done)} new clips, {len(done)} already there)" in r.stdout
    assert not [f for f in (out / 'clips').iterdir() if f.name.startswith('.')]
    _same_cache(full[0], out)


def test_rerun_skips_and_settings_are_checked(root, full):
    out, _ = full
    s = prepare(root, out, workers=1, progress=False)
    assert (s['new'], s['already'], s['kept'], s['skipped']) == (0, N_GOOD + 1, N_GOOD + 2, 4)
    with pytest.raises(AVBTError, match='other settings'): prepare(root, out, size=128, progress=False)
    with pytest.raises(AVBTError, match='AVE root folder not found'): prepare(root / 'nope', out, progress=False)


def test_order_files_limit_and_cli_errors(root, tmp_path):
    import h5py, shutil
    r2 = tmp_path / 'ave2'
    shutil.copytree(root, r2, ignore=shutil.ignore_patterns('*Set.txt'))
    for s, idx in (('train', [2, 0]), ('val', [1]), ('test', [4])):
        with h5py.File(r2 / f'{s}_order.h5', 'w') as f: f['order'] = np.array(idx)
    s = prepare(r2, tmp_path / 'c', limit=3, progress=False)
    assert (s['rows'], s['kept']) == (3, 3)
    c = open_cache(tmp_path / 'c')
    assert c.splits['train'].tolist() == [2, 0] and c.splits['val'].tolist() == [1] and c.splits['test'].tolist() == []
    r = subprocess.run(_run_cli(tmp_path / 'missing', tmp_path / 'x'), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().count('\n') == 0 and 'AVE root folder not found' in r.stderr
    with pytest.raises(AVBTError, match='not a clip cache'): open_cache(tmp_path)


def test_reader_in_dataloader_workers(full):
    import torch
    cache = open_cache(full[0])
    cache.frames(int(cache.available[0]), [0])              # a handle opened in the parent before forking
    class DS(torch.utils.data.Dataset):
        def __len__(self): return len(cache.available)
        def __getitem__(self, i):
            r = int(cache.available[i])
            return torch.from_numpy(cache.frames(r, [8])[0]), torch.from_numpy(cache.logmel(r))
    dl = torch.utils.data.DataLoader(DS(), batch_size=4, num_workers=2, multiprocessing_context='fork')
    got = [x for x, _ in dl]
    assert sum(len(x) for x in got) == len(cache.available)
    np.testing.assert_array_equal(got[0][0].numpy(), cache.frames(int(cache.available[0]), [8])[0])


def test_synthetic_layout_is_prepared(synthetic_ave, tmp_path):
    s = prepare(synthetic_ave, tmp_path / 'c', size=64, limit=3, progress=False)
    assert (s['kept'], s['skipped']) == (3, 0)
    c = open_cache(tmp_path / 'c')
    assert c.frames(0, [0, 80]).shape == (2, 64, 64, 3) and sum(len(v) for v in c.splits.values()) == 3

def test_no_video_found_is_an_error(root, tmp_path):
    "An AVE root whose annotation rows have no video: one line and exit 2 (it was an empty cache and exit 0)."
    import shutil
    r2 = tmp_path / 'novideos'
    shutil.copytree(root, r2, ignore=shutil.ignore_patterns('*.mp4'))
    with pytest.raises(AVBTError, match=r'none of the \d+ annotation rows gave a clip \(missing \d+\)'):
        prepare(r2, tmp_path / 'c', progress=False)
    assert (tmp_path / 'c' / 'report.csv').exists()                       # the per-row reasons are kept
    r = subprocess.run(_run_cli(r2, tmp_path / 'c2'), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count('\n') == 0 and 'gave a clip' in r.stderr, r.stderr
