"""Hostile input, full disks and damaged caches: every case gives one clear line (status 2) or the right result,
nothing already written is lost, and decoding costs what the file really holds."""
import contextlib, errno, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from avbt_tacma.core import AVBTError, OutputError
from conftest import run_main
from avbt_tacma.ave import Record, write_annotations
from avbt_tacma.video import write_test_clip
from avbt_tacma.prepare import prepare, open_cache, clip_file, check_clip

CLI = "import sys; from avbt_tacma.cli import main; sys.exit(main(sys.argv[1:]))"


def avbt(*args, timeout=300):
    "Run `avbt ARGS` in a fresh interpreter: (status, stdout, stderr)."
    r = subprocess.run([sys.executable, '-c', CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def one_line_error(res, cmd, *needles):
    "`res` of `avbt`: status 2, exactly one line on stderr, `avbt CMD: error:` and each needle in it, no traceback."
    rc, _, err = res
    assert rc == 2, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f'avbt {cmd}: error: '), err
    for n in needles: assert n in lines[0], (n, err)
    assert 'Traceback' not in err


@contextlib.contextmanager
def small_fs(path: Path, size: str, ro: bool = False):
    "A real tmpfs of `size` at `path` (read-only with `ro`); skips the test when this machine cannot mount."
    path.mkdir(parents=True, exist_ok=True)
    opts = f'size={size}' + (',ro' if ro else '')
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', opts, 'tmpfs', str(path)], capture_output=True)
    if r.returncode: pytest.skip(f'cannot mount a tmpfs here ({r.stderr.decode().strip()})')
    try: yield path
    finally: subprocess.run(['umount', '-l', str(path)], capture_output=True)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    "An AVE root with 6 small good clips."
    r = tmp_path_factory.mktemp('ave')
    recs = [Record('Bark', f'v{i}', 'good', 0, 10) for i in range(6)]
    for i in range(6): write_test_clip(r / 'AVE' / f'v{i}.mp4', seconds=10, size=(64, 48), fps=16, seed=i)
    write_annotations(recs, r / 'Annotations.txt'); write_annotations(recs, r / 'trainSet.txt')
    return r


# --- prepare: output side ----------------------------------------------------------------------------------------

def test_prepare_disk_full_stops_with_one_line_and_keeps_finished_clips(root, tmp_path):
    with small_fs(tmp_path / 'fs', '1500k') as fs:
        res = avbt('prepare', '--ave-root', root, '--out', fs / 'cache', '--size', 64, '--workers', 1, '--quiet')
        one_line_error(res, 'prepare', 'no space left on the device', 're-run to resume')
        assert 'skipped' not in res[1] + res[2]                                 # not blamed on the input clips
        done = [p for p in (fs / 'cache' / 'clips').iterdir()]
        assert not [p for p in done if p.name.startswith('.')]            # no temporary left behind
        assert 1 <= len(done) < 6
        for p in done: assert check_clip(p) is None                        # what was finished is intact


def test_prepare_disk_full_with_worker_processes(root, tmp_path):
    with small_fs(tmp_path / 'fs', '1500k') as fs:
        res = avbt('prepare', '--ave-root', root, '--out', fs / 'cache', '--size', 64, '--workers', 2, '--quiet')
        one_line_error(res, 'prepare', 'no space left on the device')
        # every clip file is whole (a hidden temporary `.name.h5.xxxx.h5` of a killed worker is not a clip: see note)
        for p in (fs / 'cache' / 'clips').glob('[!.]*.h5'): assert check_clip(p) is None


def test_prepare_disk_full_simulated(root, tmp_path, monkeypatch):
    "The same without a mount: the clip write fails with ENOSPC after two clips."
    import avbt_tacma.prepare as P
    calls = []
    def fsync(fd):
        calls.append(fd)
        if len(calls) > 2: raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(P.os, 'fsync', fsync)
    with pytest.raises(OutputError, match='no space left on the device'):
        prepare(root, tmp_path / 'c', workers=1, size=64, progress=False)
    clips = sorted(p.name for p in (tmp_path / 'c' / 'clips').iterdir())
    assert clips == ['v0.h5', 'v1.h5']


def test_prepare_out_read_only_or_under_a_file(root, tmp_path):
    with small_fs(tmp_path / 'ro', '1m', ro=True) as ro:
        one_line_error(avbt('prepare', '--ave-root', root, '--out', ro / 'cache'), 'prepare', 'read-only file system')
    (tmp_path / 'file').write_text('x')
    one_line_error(avbt('prepare', '--ave-root', root, '--out', tmp_path / 'file' / 'cache'), 'prepare', 'is a file')
    one_line_error(avbt('prepare', '--ave-root', root, '--out', tmp_path / 'file'), 'prepare', 'not a folder')
    assert (tmp_path / 'file').read_text() == 'x'


# --- damaged cache ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def cache(root, tmp_path_factory):
    out = tmp_path_factory.mktemp('cache')
    prepare(root, out, workers=1, size=64, progress=False)
    return out


def _damage(cache, vid, how):
    f = clip_file(cache, vid); b = f.read_bytes()
    if how == 'truncate': f.write_bytes(b[:len(b) // 3])
    else: f.write_bytes(b[:len(b) // 2] + os.urandom(256) + b[len(b) // 2 + 256:])
    return f


@pytest.mark.parametrize('how', ['truncate', 'overwrite'])
def test_damaged_cache_is_named_by_readers_and_remade_by_prepare(root, cache, tmp_path, how):
    import shutil, torch
    c = tmp_path / 'c'; shutil.copytree(cache, c)
    f = _damage(c, 'v3', how)
    cc = open_cache(c)
    class DS(torch.utils.data.Dataset):                  # read in a DataLoader worker, as training does
        def __len__(self): return len(cc.available)
        def __getitem__(self, i): return torch.from_numpy(cc.logmel(int(cc.available[i])))
    with pytest.raises(Exception) as e:
        list(torch.utils.data.DataLoader(DS(), batch_size=2, num_workers=1, multiprocessing_context='fork'))
    from avbt_tacma.cli import error_line
    assert error_line(e.value).startswith(f"{f}: damaged cache file"), error_line(e.value)
    s = prepare(root, c, workers=1, size=64, progress=False)
    assert s['remade'] == ['v3'] and s['new'] == 1 and s['already'] == 5 and 're-made 1 damaged' in s['line']
    assert check_clip(f) is None
    np.testing.assert_array_equal(open_cache(c).logmel(3), open_cache(cache).logmel(3))


# --- command-line arguments: one line, status 2, before any work --------------------------------------------------


@pytest.mark.parametrize('argv, needle', [
    (['train-avbt', '--data', 'C', '--out', 'R', '--seed', '-5'], '--seed must be between 0 and 4294967295, got -5'),
    (['train-avbt', '--data', 'C', '--out', 'R', '--device', 'meta'], "unknown device 'meta'"),
    (['train-avbt', '--data', 'C', '--out', 'R', '--max-steps', '0'], '--max-steps must be at least 1, got 0'),
    (['train-avbt', '--data', 'C', '--out', 'R', '--workers', '-2'], '--workers must be between 0 and 1024, got -2'),
    (['extract', '--checkpoint', 'a.pt', '--data', 'C', '--out', 'f.h5', '--batch-size', '0'], '--batch-size must be'),
    (['extract', '--checkpoint', 'a.pt', '--data', 'C', '--out', 'f.h5', '--workers', '-2'], '--workers must be'),
    (['reproduce', '--seeds', '-1', '--device', 'tpu'], '--seeds must be between 1 and 1000, got -1'),
    (['reproduce', '--avbt-seeds', '0'], '--avbt-seeds must be between 1 and 100, got 0'),
    (['reproduce', '--device', 'tpu'], "unknown device 'tpu'"),
    (['localize', 'v.mp4', '--checkpoint', 'c.pt', '--hop', '0'], '--hop must be between 1 and 10, got 0'),
    (['localize', 'v.mp4', '--checkpoint', 'c.pt', '--max-seconds', '0'], '--max-seconds must be'),
    (['train-tacma', '--features', 'F', '--out', 'R', '--seeds', '0'], '--seeds must be'),
    (['prepare', '--ave-root', 'A', '--out', 'C', '--workers', '-1'], '--workers must be'),
    (['prepare', '--ave-root', 'A', '--out', 'C', '--limit', '0'], '--limit must be'),
    (['synth', '--out', 'S', '--videos', '0'], 'videos must be at least 1'),
    (['train-avbt', '--data', 'C', '--out', 'R', '--seed', 'x'], "argument --seed: invalid int value: 'x'"),
])
def test_bad_arguments_are_one_line(capsys, tmp_path, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    res = run_main(capsys, *argv)
    one_line_error(res, argv[0], needle)
    assert sorted(os.listdir(tmp_path)) == []                          # nothing was made


def test_output_paths_checked_up_front(capsys, tmp_path):
    (tmp_path / 'file').write_text('keep')
    one_line_error(run_main(capsys, 'reproduce', '--out', tmp_path / 'file'), 'reproduce', 'exists and is not a folder')
    one_line_error(run_main(capsys, 'train-avbt', '--data', tmp_path, '--out', tmp_path / 'file' / 'r'), 'train-avbt',
                   'is a file')
    one_line_error(run_main(capsys, 'extract', '--checkpoint', 'a', '--data', tmp_path, '--out', tmp_path), 'extract',
                   'is a folder')
    one_line_error(run_main(capsys, 'data', 'download', '--to', tmp_path / 'file' / 'x'), 'data', 'is a file')
    with small_fs(tmp_path / 'ro', '1m', ro=True) as ro:
        one_line_error(run_main(capsys, 'data', 'download', '--to', ro / 'x'), 'data', 'read-only file system')
        one_line_error(run_main(capsys, 'train-avbt', '--data', tmp_path, '--out', ro / 'r'), 'train-avbt', 'read-only')
    assert (tmp_path / 'file').read_text() == 'keep'


@pytest.mark.parametrize('junk', [b'', b'\x00', os.urandom(3000), b'PK\x03\x04' + os.urandom(200), b'\x80\x02}q\x00.'])
def test_junk_checkpoint_is_one_line(capsys, tmp_path, junk):
    (tmp_path / 'c.pt').write_bytes(junk)
    write_test_clip(tmp_path / 'v.mp4', seconds=2, size=(32, 32))
    res = run_main(capsys, 'localize', tmp_path / 'v.mp4', '--checkpoint', tmp_path / 'c.pt', '--out', tmp_path / 'o',
                   '--device', 'cpu')
    one_line_error(res, 'localize', 'c.pt', 'not a readable avbt-tacma checkpoint')


# --- property-based: parsers and argument checks -------------------------------------------------------------------

from hypothesis import given, settings, strategies as st, HealthCheck
from avbt_tacma.ave import CATEGORIES, parse_annotation_line, read_annotations

ids = st.text(st.characters(whitelist_categories=('Lu', 'Ll', 'Nd'), whitelist_characters='-_'), min_size=1,
              max_size=20)


@st.composite
def records(draw):
    s = draw(st.integers(0, 10)); e = draw(st.integers(s, 10))
    return Record(draw(st.sampled_from(CATEGORIES)), draw(ids), draw(st.sampled_from(['good', 'bad', ''])), s, e)


@given(st.lists(records(), max_size=8), st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_annotations_round_trip(tmp_path, recs, header):
    p = tmp_path / 'Annotations.txt'
    write_annotations(recs, p, header=header)
    assert read_annotations(p) == recs


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_any_line_parses_or_fails_with_one_line(line):
    try: r = parse_annotation_line(line, 'f:1')
    except AVBTError as e:
        assert '\n' not in str(e) and str(e).startswith('f:1: ')
        return
    assert 0 <= r.start <= r.end <= 10 and r.category and r.video_id
    assert line.count('&') == 4


@given(st.binary(max_size=300))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_bytes_read_or_fail_with_one_line(tmp_path, data):
    p = tmp_path / 'Annotations.txt'; p.write_bytes(data)
    try: recs = read_annotations(p)
    except AVBTError as e: assert '\n' not in str(e) and str(p) in str(e)
    else: assert all(r.category in CATEGORIES for r in recs)


@given(st.sampled_from(['seed', 'seeds', 'epochs', 'batch_size', 'max_steps', 'workers', 'threads', 'limit', 'hop',
                        'max_seconds']), st.integers(-2**40, 2**40))
@settings(max_examples=300, deadline=None)
def test_int_rules_accept_exactly_their_range(dest, value):
    import argparse
    from avbt_tacma.cli import ARG_RULES, check_args
    lo, hi = ARG_RULES[dest]
    ns = argparse.Namespace(command='x', **{dest: value})
    ok = (lo is None or value >= lo) and (hi is None or value <= hi)
    if ok: check_args(ns)
    else:
        with pytest.raises(AVBTError, match=f"--{dest.replace('_', '-')} must be .* got {value}"):
            check_args(ns)


@given(st.text(max_size=12))
@settings(max_examples=200, deadline=None)
def test_device_names(name):
    import re
    from avbt_tacma.core import check_device
    if re.fullmatch(r'(auto|cpu|cuda(:\d+)?|mps)', name): assert check_device(name) == name
    else:
        with pytest.raises(AVBTError, match='unknown device'): check_device(name)


# --- bounded decoding -----------------------------------------------------------------------------------------------

def sparse_video(path, times, size=32, audio_seconds=1.0, audio_start=0.0):
    "An mp4 whose few frames sit at `times` (s): a tiny file that claims a huge duration (written with PyAV)."
    import av, fractions
    ms = fractions.Fraction(1, 1000)
    with av.open(str(path), 'w', format='mp4') as c:
        v = c.add_stream('libx264', rate=25); v.width = v.height = size; v.pix_fmt = 'yuv420p'
        v.time_base = ms; v.codec_context.time_base = ms
        a = c.add_stream('aac', rate=16000); a.layout = 'mono'
        for i, t in enumerate(times):
            fr = av.VideoFrame.from_ndarray(np.full((size, size, 3), 40 * i, np.uint8), format='rgb24')
            fr.pts, fr.time_base = int(t * 1000), ms
            for p in v.encode(fr): c.mux(p)
        for p in v.encode(): c.mux(p)
        x = (0.1 * np.sin(np.arange(int(audio_seconds * 16000)) / 5)).astype(np.float32)[None]
        k0 = int(audio_start * 16000)
        for k in range(0, x.shape[1], 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, k:k + 1024]), format='fltp', layout='mono')
            fr.sample_rate, fr.pts = 16000, k0 + k
            for p in a.encode(fr): c.mux(p)
        for p in a.encode(): c.mux(p)
    return path


@pytest.mark.parametrize('hours', [3, 30])
def test_huge_claimed_duration_is_refused_fast(tmp_path, hours):
    import resource, time
    from avbt_tacma.localize import decode_video, MAX_SECONDS
    p = sparse_video(tmp_path / 'sparse.mp4', times=[0, 1, hours * 1800, hours * 3600])
    assert p.stat().st_size < 100_000
    rss0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.time()
    with pytest.raises(AVBTError,
                       match=rf"runs {hours * 3600} s by its time stamps, more than the {MAX_SECONDS} s allowed"):
        decode_video(p)
    assert time.time() - t0 < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000          # kB: no big allocation


def test_sparse_video_within_the_bound_decodes_to_its_length(tmp_path):
    from avbt_tacma.localize import decode_video
    v = decode_video(sparse_video(tmp_path / 's.mp4', times=[0, 10, 20, 25]), size=32, max_seconds=30)
    n = v.n_seconds                                  # the last frame stays one frame period (here 7.5 s) on screen
    assert 25 <= n <= 33 and v.frames.shape == (n, 32, 32, 3) and len(v.audio) == n * 16000
    assert v.frames[15].mean() == pytest.approx(40, abs=3) and v.frames[24].mean() == pytest.approx(80,
        abs=3) and v.frames[-1].mean() == pytest.approx(120, abs=3)
    with pytest.raises(AVBTError, match='raise --max-seconds'): decode_video(tmp_path / 's.mp4', max_seconds=20)


def test_late_audio_start_costs_no_more_than_the_clip(tmp_path):
    "Audio whose time stamps start hours late: silence, and no allocation of hours of zeros."
    import resource
    from avbt_tacma.video import decode_clip
    p = sparse_video(tmp_path / 'late.mp4', times=[0, 5, 9.9], audio_start=3 * 3600)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    frames, audio, info = decode_clip(p, 160, 32)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200_000
    assert audio.shape == (160000,) and np.abs(audio).max() == 0 and frames.shape == (160, 32, 32, 3)


# --- no overwrites of files we did not write ----------------------------------------------------------------------

def test_synth_never_overwrites_foreign_annotation_files(capsys, tmp_path):
    (tmp_path / 'Annotations.txt').write_text('theirs'); (tmp_path / 'testSet.txt').write_text('theirs too')
    for extra in ([], ['--force']):
        res = run_main(capsys, 'synth', '--out', tmp_path, '--videos', 4, '--classes', 2, *extra)
        one_line_error(res, 'synth', 'Annotations.txt, testSet.txt that avbt synth did not write')
    assert (tmp_path / 'Annotations.txt').read_text() == 'theirs'
    assert sorted(os.listdir(tmp_path)) == ['Annotations.txt', 'testSet.txt']


def test_localize_names_never_collide(tmp_path):
    from avbt_tacma.localize import output_names, _record_output
    (tmp_path / 'clip.json').write_text('not ours')
    names = output_names([tmp_path / 'a' / 'clip.mp4', tmp_path / 'b' / 'clip.mp4', tmp_path / 'clip-2.mp4'], tmp_path)
    assert len(set(names)) == 3 and 'clip' not in names
    _record_output(tmp_path, 'v', tmp_path / 'v.mp4')
    assert output_names([tmp_path / 'v.mp4'], tmp_path) == ['v']                     # a re-run reuses its own name
    assert output_names([tmp_path / 'x' / 'v.mp4'], tmp_path) == ['v-2']            # another video never takes it


# --- annotations ------------------------------------------------------------------------------------------------------

def test_prepare_refuses_unknown_category_and_empty_annotations(capsys, root, tmp_path):
    import shutil
    r = tmp_path / 'ave'; shutil.copytree(root, r)
    (r / 'Annotations.txt').write_text((r / 'Annotations.txt').read_text() + 'Unicorn&v0&good&0&3\n')
    one_line_error(run_main(capsys, 'prepare', '--ave-root', r, '--out', tmp_path / 'c'), 'prepare',
                   "Annotations.txt:8: unknown category 'Unicorn'")
    (r / 'Annotations.txt').write_text('')
    one_line_error(run_main(capsys, 'prepare', '--ave-root', r, '--out', tmp_path / 'c'), 'prepare',
                   'no annotation rows')
    assert not (tmp_path / 'c').exists()


def test_one_id_with_two_labels_is_kept_as_in_the_release(root, tmp_path):
    "The AVE release annotates 45 ids twice with two labels (male/female speech): both rows are kept, one clip file."
    import shutil
    r = tmp_path / 'ave'; shutil.copytree(root, r)
    (r / 'Annotations.txt').write_text((r / 'Annotations.txt').read_text() + 'Cat&v0&good&0&3\n')
    s = prepare(r, tmp_path / 'c', size=64, progress=False, limit=None)
    c = open_cache(tmp_path / 'c')
    assert s['kept'] == 7 and c.labels(0)[0] == 2 and c.labels(6)[0] == 22


# --- downloads --------------------------------------------------------------------------------------------------------

HTML = (b'<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>Too many '
        b'users</body></html>')


def test_html_partial_file_is_deleted_and_refetched(tmp_path, caplog):
    import functools, http.server, threading, logging
    from avbt_tacma.download import fetch
    www = tmp_path / 'www'; www.mkdir()
    blob = b'\x89HDF\r\n\x1a\n' + os.urandom(5000); (www / 'f.h5').write_bytes(blob)
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(http.server.SimpleHTTPRequestHandler,
                                                                                directory=str(www)))
    srv.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{srv.server_address[1]}/f.h5'
        (tmp_path / 'f.h5.part').write_bytes(HTML)                       # what a quota page left behind
        with caplog.at_level(logging.WARNING): fetch(url, tmp_path / 'f.h5', progress=False)
        assert (tmp_path / 'f.h5').read_bytes() == blob
        assert 'is a web page' in caplog.text and 'deleted it' in caplog.text
        # an HTML page kept as the file by an old version
        (tmp_path / 'f.h5').write_bytes(HTML)
        fetch(url, tmp_path / 'f.h5', progress=False)
        assert (tmp_path / 'f.h5').read_bytes() == blob
        # the server itself sends a page: refused, deleted
        (www / 'g.h5').write_bytes(HTML)
        with pytest.raises(AVBTError, match='the download is a web page .*deleted the partial file g.h5.part'):
            fetch(url.replace('f.h5', 'g.h5'), tmp_path / 'g.h5', progress=False)
        assert not (tmp_path / 'g.h5.part').exists() and not (tmp_path / 'g.h5').exists()
    finally: srv.shutdown(); srv.server_close()


def test_damaged_zip_member_is_one_line(tmp_path):
    import zipfile
    from avbt_tacma.download import safe_extract
    z = tmp_path / 'a.zip'
    with zipfile.ZipFile(z, 'w', zipfile.ZIP_STORED) as f: f.writestr('AVE/x.mp4', b'A' * 20000)
    b = bytearray(z.read_bytes()); b[5000:5010] = b'B' * 10; z.write_bytes(bytes(b))
    with pytest.raises(AVBTError, match=r"member 'AVE/x.mp4' is damaged .*delete a.zip and re-run") as e:
        safe_extract(z, tmp_path / 'out', progress=False)
    assert '\n' not in str(e.value) and not (tmp_path / 'out' / 'AVE' / 'x.mp4').exists()


def test_checkpoint_on_a_full_disk_is_an_output_error_and_keeps_the_old_one(tmp_path):
    import torch
    from avbt_tacma.core import save_checkpoint, load_checkpoint
    with small_fs(tmp_path / 'fs', '1m') as fs:
        save_checkpoint(fs / 'm.pt', 'x', {}, {'model': {'w': torch.ones(10)}})
        with pytest.raises(OutputError, match='no space left on the device'):
            save_checkpoint(fs / 'm.pt', 'x', {}, {'model': {'w': torch.ones(1_000_000)}})
        assert load_checkpoint(fs / 'm.pt')['model']['w'].shape == (10,) and os.listdir(fs) == ['m.pt']
