"""Run folders (issue 24, run-folder half): one owner per --out, finished work never replaced without --force, inputs
judged by their content, a damaged folder repaired by re-running the step that made the damaged file, children that
die with their parent, and the exit codes (2 bad input, 1 a failed step, 130 Ctrl-C)."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from avbt_tacma.core import AVBTError, RunError, run_lock, file_digest
from conftest import run_main
from avbt_tacma.steps import Step, run_steps, step_state
from avbt_tacma.report import write_summary, read_stamp

HOLD = ("import sys, time; from avbt_tacma.core import run_lock\n"
        "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)")



def one_line(res, cmd, *needles, rc=2):
    status, _, err = res
    lines = [l for l in err.splitlines() if l.strip()]
    assert status == rc and len(lines) == 1 and lines[0].startswith(f'avbt {cmd}: error: '), (status, err)
    for n in needles: assert n in lines[0], (n, err)


def gone(pid: int) -> bool:
    "Whether process `pid` no longer runs (a zombie counts as gone)."
    try: return Path(f'/proc/{pid}/stat').read_text().split(')')[-1].split()[0] in 'ZX'
    except (FileNotFoundError, ProcessLookupError): return True


def children(pid: int) -> list:
    "Direct children of `pid` (Linux /proc)."
    out = []
    for t in Path(f'/proc/{pid}/task').glob('*'):
        try: out += [int(c) for c in (t / 'children').read_text().split()]
        except OSError: pass
    return out


@pytest.fixture
def held(tmp_path):
    "A folder whose run lock another process holds (its pid is the second item)."
    folder = tmp_path / 'held'
    p = subprocess.Popen([sys.executable, '-c', HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == 'held'
    yield folder, p.pid
    p.kill(); p.wait()


def small_features(path: Path, n=40, seed=0) -> Path:
    from avbt_tacma.train_heads import synthetic_features
    from avbt_tacma.features import save_features
    fs = synthetic_features(n_videos=n, n_classes=3, d_a=8, d_v=8, seed=seed)
    save_features(path, fs.audio, fs.visual, fs.labels, fs.splits, fs.class_names)
    return path


# ---- one owner per output folder ------------------------------------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='flock and /proc')
def test_a_second_run_on_a_held_folder_says_who_holds_it(held, capsys, tmp_path):
    folder, pid = held
    feats = small_features(tmp_path / 'f.h5')
    for argv in (['train-tacma', '--features', feats, '--out', folder, '--head', 'probe_av', '--seeds', 1],
                 ['reproduce', '--scale', 'smoke', '--out', folder],
                 ['localize', str(tmp_path / 'x.mp4'), '--checkpoint', tmp_path / 'm.pt', '--out', folder],
                 ['train-avbt', '--data', tmp_path, '--out', folder]):
        one_line(run_main(capsys, *argv), argv[0], 'in use by another run', f'pid {pid}', 'started 20')
    assert sorted(p.name for p in folder.iterdir()) == ['.avbt.lock']            # nothing written beside the holder
    with run_lock(tmp_path / 'free'): pass                                        # a free folder is taken at once


def test_the_lock_goes_with_a_killed_holder(tmp_path):
    "kill -9 of the holder: no stale lock, the next run takes the folder."
    p = subprocess.Popen([sys.executable, '-c', HOLD, str(tmp_path / 'r')], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == 'held'
    with pytest.raises(AVBTError, match='in use by another run'): run_lock(tmp_path / 'r').__enter__()
    p.kill(); p.wait()
    with run_lock(tmp_path / 'r'): pass


def test_train_avbt_keeps_a_finished_run(tiny_avbt, synthetic_cache, tmp_path):
    "A folder with avbt.pt and no checkpoint.pt: refused, every file byte for byte as it was; --force replaces it."
    from avbt_tacma.avbt import AVBTConfig
    from avbt_tacma.train_avbt import train_avbt
    from conftest import TINY_AVBT
    run = tmp_path / 'run'; shutil.copytree(tiny_avbt, run); (run / 'checkpoint.pt').unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    cfg = AVBTConfig.preset('synthetic', **TINY_AVBT)
    with pytest.raises(AVBTError, match='holds a finished AV-BT run'):
        train_avbt(synthetic_cache, run, cfg, seed=0, device='cpu', workers=0, progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    train_avbt(synthetic_cache, run, cfg, seed=0, device='cpu', workers=0, progress=False, max_steps=1, force=True)
    assert (run / 'avbt.pt').read_bytes() != before['avbt.pt']


def test_train_tacma_judges_the_whole_feature_file(tmp_path, capsys):
    "A value changed in the last row (beyond any sample): not reused; another run's results need --force."
    import h5py
    feats, out = small_features(tmp_path / 'f.h5'), tmp_path / 'heads'
    args = ['train-tacma', '--features', feats, '--out', out, '--head', 'probe_av', '--seeds', 1, '--epochs', 1,
            '--device', 'cpu', '--no-progress']
    assert run_main(capsys, *args)[0] == 0
    first = (out / 'probe_av_seed0.json').read_bytes()
    assert run_main(capsys, *args)[0] == 0 and (out / 'probe_av_seed0.json').read_bytes() == first   # reused
    with h5py.File(feats, 'r+') as f: f['audio'][-1, -1, -1] += 1.0
    one_line(run_main(capsys, *args), 'train-tacma', 'other settings or other features', '--force')
    assert (out / 'probe_av_seed0.json').read_bytes() == first                    # nothing replaced
    assert run_main(capsys, *args, '--force')[0] == 0
    assert json.loads((out / 'probe_av_seed0.json').read_text())['config']['features'] != \
        json.loads(first)['config']['features']


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(['audio', 'visual', 'labels']), row=st.integers(0, 39), delta=st.sampled_from([1e-3, 1.0]))
def test_fingerprint_sees_every_value(which, row, delta):
    from avbt_tacma.train_heads import synthetic_features, features_fingerprint
    fs = synthetic_features(n_videos=40, n_classes=3, d_a=4, d_v=4, seed=1)
    h = features_fingerprint(fs)
    x = getattr(fs, which).copy(); x[row, -1, -1] += delta
    setattr(fs, which, x)
    assert features_fingerprint(fs) != h


def test_prepare_never_writes_under_the_ave_root(synthetic_ave, tmp_path):
    from avbt_tacma.prepare import prepare
    root = tmp_path / 'ave'; shutil.copytree(synthetic_ave, root)
    before = sorted(p.relative_to(root) for p in root.rglob('*'))
    for out in (root, root / 'cache', root / 'a' / '..' / 'b'):
        with pytest.raises(AVBTError, match='is inside --ave-root'): prepare(root, out, progress=False)
    assert sorted(p.relative_to(root) for p in root.rglob('*')) == before


# ---- a run folder verifies what it calls done -----------------------------------------------------------------------

def write_nb(path, body: str):
    cell = lambda src, tags: {'cell_type': 'code', 'metadata': {'tags': tags}, 'source': src, 'outputs': [],
                              'execution_count': None}
    nb = {'cells': [cell("out = ''", ['parameters']), cell(body, [])], 'nbformat': 4, 'nbformat_minor': 4,
          'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}}}
    Path(path).write_text(json.dumps(nb))

# a step that writes a table JSON and a PNG, and logs that it ran
MAKE = ("from pathlib import Path\nimport json, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "open(Path(out, 'runs.log'), 'a').write({name!r} + '\\n')\nPath(out, 'tables').mkdir(exist_ok=True)\n"
        "Path(out, 'tables', {name!r} + '.json').write_text(json.dumps({{'step': {name!r}}}))\n"
        "fig = plt.figure(figsize=(1, 1)); Path(out, 'figures').mkdir(exist_ok=True)\n"
        "fig.savefig(Path(out, 'figures', {name!r} + '.png'))")


def test_damaged_outputs_and_stamps_rerun_their_step(tmp_path):
    nbs, out = tmp_path / 'nbs', tmp_path / 'run'; nbs.mkdir(); out.mkdir()
    for n in 'ab': write_nb(nbs / f'{n}.ipynb', MAKE.format(name=n))
    steps = tuple(Step(n, f'{n}.ipynb', (), (f'tables/{n}.json', f'figures/{n}.png')) for n in 'ab')
    def run():
        (out / 'runs.log').unlink(missing_ok=True); lines = []
        res = run_steps(out, {'out': str(out)}, steps, notebooks=nbs, log=lines.append)
        assert res['ran'] == ((out / 'runs.log').read_text().split() if (out / 'runs.log').exists() else [])
        return res['ran'], ' '.join(lines)
    assert run()[0] == ['a', 'b'] and run()[0] == []
    damage = [(lambda: (out / 'tables/a.json').write_text('{"step": "a"'), 'tables/a.json does not load'),
              (lambda: (out / 'tables/a.json').unlink(), 'tables/a.json is missing'),
              (lambda: (out / 'figures/b.png').write_bytes((out / 'figures/b.png').read_bytes()[:100]),
               'figures/b.png does not load'),
              (lambda: (out / 'stamps/a.json').write_text('{"hash": "x"'), 'stamps/a.json is damaged'),
              (lambda: (out / 'stamps/b.json').write_text(json.dumps(
                  {k: v for k, v in json.loads((out / 'stamps/b.json').read_text()).items() if k != 'seconds'})),
               'stamps/b.json is damaged')]
    for hurt, said in damage:
        hurt()
        ran, log = run()
        assert len(ran) == 1 and said in log, (said, ran, log)
        assert run()[0] == []                                                       # repaired
    # the report reads around a damaged sidecar and stamp, and says which step is not done
    (out / 'tables/b.json').write_text('{'); (out / 'stamps/a.json').write_text('{"hash": "x"}')
    md, _ = write_summary(out, steps)
    assert 'not run (or failed)' in md.read_text() and read_stamp(out / 'stamps/a.json') is None
    assert step_state(out / 'stamps/b.json', 'x', out, steps[1].outputs) == 'inputs changed'


def test_a_notebook_that_fails_is_a_run_error_bad_input_is_not(tmp_path):
    nbs, out = tmp_path / 'nbs', tmp_path / 'run'; nbs.mkdir(); out.mkdir()
    write_nb(nbs / 'x.ipynb', "raise ValueError('boom')")
    write_nb(nbs / 'y.ipynb', "from avbt_tacma.core import AVBTError\nraise AVBTError('bad file')")
    with pytest.raises(RunError, match='boom'):
        run_steps(out, {'out': str(out)}, (Step('x', 'x.ipynb'),), notebooks=nbs, log=lambda *a: None)
    with pytest.raises(AVBTError, match='bad file') as e:
        run_steps(out, {'out': str(out)}, (Step('y', 'y.ipynb'),), notebooks=nbs, log=lambda *a: None)
    assert not isinstance(e.value, RunError)


def test_exit_codes(capsys, monkeypatch):
    import avbt_tacma.reproduce as rp
    one_line(run_main(capsys, 'reproduce', '--only', ' , '), 'reproduce', '--only names no step')
    for exc, rc in ((RunError('2 AV-BT training(s) failed'), 1), (AVBTError('bad'), 2), (KeyboardInterrupt(), 130)):
        def boom(*a, **k): raise exc
        monkeypatch.setattr(rp, 'reproduce', boom)
        assert run_main(capsys, 'reproduce', '--scale', 'smoke')[0] == rc
        monkeypatch.setattr(rp, 'reproduce', boom)
        assert run_main(capsys, 'reproduce', '--scale', 'smoke', '--train-only', '--gpus', 'cpu')[0] == rc


# ---- reproduce: content of the data, one scale per folder ----------------------------------------------------------

DATA_NB = ("from pathlib import Path\nimport json, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
           "open(Path(out, 'runs.log'), 'a').write('data\\n')\nPath(out, 'figures').mkdir(exist_ok=True)\n"
           "fig = plt.figure(figsize=(1, 1)); fig.savefig(Path(out, 'figures', 'data_examples.png'))\n"
           "Path(out, 'figures', 'data_examples.json').write_text(json.dumps({'step': 'data', 'png': 'x'}))")


def test_reproduce_reruns_when_the_annotations_change(tmp_path, capsys):
    "Edited Annotations.txt or split list (same size, same mtime even): the data step runs again; --force re-reads."
    from avbt_tacma.reproduce import reproduce
    nbs, data, out = tmp_path / 'nbs', tmp_path / 'ave', tmp_path / 'run'
    nbs.mkdir(); data.mkdir()
    write_nb(nbs / '00_data.ipynb', DATA_NB)
    ann = data / 'Annotations.txt'
    ann.write_text('Category&VideoID&Quality&StartTime&EndTime\nChurch bell&aaaaaaaaaaa&good&0&10\n')
    (data / 'trainSet.txt').write_text(ann.read_text())
    go = lambda **kw: reproduce('smoke', data=data, only='data', device='cpu', out=out, notebooks=nbs, log=print,
                                jobs=1, **kw)['ran']
    assert go() == ['data'] and go() == []
    st = ann.stat()
    ann.write_text(ann.read_text().replace('Church bell', 'Church bulb'))              # same size
    assert go() == ['data'] and go() == []
    (data / 'trainSet.txt').write_text(ann.read_text().replace('good', 'bad!'))
    assert go() == ['data']
    ann.write_text(ann.read_text().replace('bulb', 'bell')); os.utime(ann, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert go(force=True) == ['data']                                               # --force reads every file again
    # a folder made at another scale, and --only naming nothing: one line each, nothing run
    one_line(run_main(capsys, 'reproduce', '--scale', 'default', '--data', data, '--only', 'data', '--out', out),
             'reproduce', 'holds a run at scale smoke')
    assert json.loads((out / 'run.json').read_text())['scale'] == 'smoke'


# ---- children die with their parent ---------------------------------------------------------------------------------

TRAIN = ("import sys; from avbt_tacma.reproduce import train_parallel\n"
         "train_parallel(sys.argv[1], dict(data_source='cache', data=sys.argv[2], scale='smoke', seeds=1), ['cpu'],"
         " ['avbt'], poll=0.1)")
PAPERMILL = ("import sys; from avbt_tacma.steps import Step, run_steps\n"
             "run_steps(sys.argv[1], {'out': sys.argv[1]}, (Step('s', 's.ipynb'),), notebooks=sys.argv[2])")


def _kill_parent_then_children_go(cmd, child_ready, timeout=120):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0, kids = time.time(), []
    try:
        while time.time() - t0 < timeout and not (kids := child_ready(p.pid)):
            assert p.poll() is None, 'the parent ended before its child started'
            time.sleep(0.2)
        assert kids, 'no child started'
        os.kill(p.pid, signal.SIGKILL); p.wait()
        t1 = time.time()
        while time.time() - t1 < 10 and not all(gone(k) for k in kids): time.sleep(0.1)
        assert all(gone(k) for k in kids), f'children {kids} outlived their parent'
    finally:
        if p.poll() is None: p.kill(); p.wait()
        for k in kids:                                  # a child that outlived its parent (the failure): stop it
            try: os.kill(k, signal.SIGKILL)
            except ProcessLookupError: pass


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG')
def test_training_children_die_with_reproduce(synthetic_cache, tmp_path):
    _kill_parent_then_children_go([sys.executable, '-c', TRAIN, str(tmp_path / 'run'), str(synthetic_cache)],
                                  children)


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG')
def test_notebook_kernels_die_with_reproduce(tmp_path):
    nbs, out = tmp_path / 'nbs', tmp_path / 'run'; nbs.mkdir(); out.mkdir()
    write_nb(nbs / 's.ipynb', "import os, time\nopen(os.path.join(out, 'pid'), 'w').write(str(os.getpid()))\n"
                              "time.sleep(300)")
    kernel = lambda _: [int((out / 'pid').read_text())] if (out / 'pid').exists() and (out / 'pid').read_text() else []
    _kill_parent_then_children_go([sys.executable, '-c', PAPERMILL, str(out), str(nbs)], kernel)
