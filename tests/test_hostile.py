"""Hostile input, full disks and damaged caches: every case gives one clear line (status 2) or the right result,
nothing already written is lost, and decoding costs what the file really holds."""
import contextlib, errno, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
from avbt_tacma.core import AVBTError, OutputError
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
        for p in (fs / 'cache' / 'clips').glob('*.h5'): assert check_clip(p) is None


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
