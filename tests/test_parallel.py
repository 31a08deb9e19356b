"`avbt reproduce --gpus`: the AV-BT trainings in parallel processes (fake devices `cpu,cpu`), reused by the notebooks."
import io, json, sys, subprocess, contextlib
from pathlib import Path
import pytest
from avbt_tacma.core import AVBTError
from avbt_tacma.store import Repro
from avbt_tacma.reproduce import avbt_jobs, avbt_trainings, train_parallel, _job_args


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    "24 synthetic clips: enough training clips for one smoke batch (16)."
    from avbt_tacma.synth import make_synthetic
    return make_synthetic(tmp_path_factory.mktemp('clips') / 'set', videos=24, seed=0, classes=4, size=64, fps=8,
                          workers=1, progress=False)


def _interval(run: Path) -> tuple:
    "When a training ran: its config.json (start) to its avbt.pt (end)."
    return (run / 'config.json').stat().st_mtime, (run / 'avbt.pt').stat().st_mtime


@pytest.mark.slow
def test_two_trainings_at_once_then_the_notebooks_reuse_them(clips, tmp_path):
    out = tmp_path / 'run'
    params = dict(data_source='ave', data=str(clips), scale='smoke', seeds=1)
    lines = []
    res = train_parallel(out, params, ['cpu', 'cpu'], ['table4'], log=lines.append, poll=0.1)
    # table4 asks for baseline, noshare and agva (its baseline is the baseline: same key, trained once)
    assert len(res['trained']) == 3 and not res['failed'], lines
    runs = {r.name.split('-')[0]: r for r in (out / 'models' / 'avbt').iterdir() if r.is_dir()}
    assert set(runs) == {'baseline', 'noshare', 'agva'}
    spans = sorted(_interval(r) for r in runs.values())
    assert spans[1][0] < spans[0][1], f"the first two trainings did not overlap: {spans}"      # really concurrent
    assert all((r / 'features.h5').exists() for r in runs.values())
    # the notebooks' calls (Repro.features as table4 makes them) find every model and feature file: nothing trains
    R = Repro('table4', out, 'smoke', 'ave', clips, 'cpu', 1)
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        got = {v: R.features(v, **kw, **R.ablation) for v, kw in
               {'baseline': {}, 'noshare': dict(shared_projector=False), 'agva': dict(agva=True)}.items()}
    assert 'trained in' not in said.getvalue() and 'extracted in' not in said.getvalue(), said.getvalue()
    assert {v: f.parent for v, f in got.items()} == runs
    again = train_parallel(out, params, ['cpu', 'cpu'], ['table4'], log=lines.append)
    assert again['trained'] == [] and len(again['reused']) == 3


def test_jobs_match_the_notebooks_keys(clips, tmp_path):
    "Every job's run folder is the one `Repro.features` of the notebooks would use (keys only, nothing trained)."
    R = Repro('x', tmp_path, 'smoke', 'ave', clips, 'cpu', 1)
    from avbt_tacma.datasets import TABLE5_ROWS
    jobs = avbt_trainings(['table5'])                 # its majority row reads the baseline's features
    assert jobs[0]['variant'] == 'baseline' and len(jobs) == 1 + len(TABLE5_ROWS)
    jobs = jobs[1:]
    for job, (aug, _) in zip(jobs, TABLE5_ROWS):
        v, a, seed, kw = _job_args(R, job | dict(seed=2))
        assert a is aug and seed == 2
        assert R.avbt_run(v, a, seed, **kw) == R.avbt_run('aug-' + aug.name.replace('*', 'S').replace('+', '-'),
                                                           aug=aug, seed=2, **R.ablation)
        assert R.avbt_run(v, a, seed, **kw) != R.avbt_run(v, a, 0, **kw)          # another AV-BT seed: another model


def test_quick_trains_fewer_avbt_seeds_only_for_tables_4_5(clips, tmp_path):
    "At quick: 3 AV-BT seeds for the main variants, 2 (`ablation_avbt_seeds`) for each Table 4-5 variant; default: 3."
    from avbt_tacma.datasets import TABLE5_ROWS
    for scale, main, abl in (('quick', 3, 2), ('default', 3, 3)):
        R = Repro('x', tmp_path, scale, 'ave', clips, 'cpu', 1)
        jobs = avbt_jobs(R)
        n_abl = sum(1 for j in avbt_trainings() if j.get('ablation'))
        assert n_abl == 3 + len(TABLE5_ROWS)                           # Table 4's baseline, noshare, agva + Table 5
        assert sorted(j['seed'] for j in jobs if j.get('ablation')) == sorted(list(range(abl)) * n_abl)
        assert sorted(j['seed'] for j in jobs if not j.get('ablation')) == sorted(list(range(main)) * 3)
        assert R.ablation_avbt_seeds == list(range(abl))
        assert ('2 AV-BT trainings, not 3' in R.ablation_note()) == (abl == 2)


def test_a_failed_training_is_named_in_one_line(synthetic_ave, tmp_path):
    "A training failing in its process (12 clips: fewer than a smoke batch of 16) is named, with its log, in one line."
    params = dict(data_source='ave', data=str(synthetic_ave), scale='smoke', seeds=1)
    with pytest.raises(AVBTError) as e: train_parallel(tmp_path / 'run', params, ['cpu'], ['avbt'], log=lambda *a: None)
    msg = str(e.value)
    assert '\n' not in msg and '2 AV-BT training(s) failed' in msg and 'baseline-' in msg
    assert 'fewer than one batch' in msg
    assert 'log: ' in msg and Path(msg.split('log: ')[1].split(')')[0]).exists()


@pytest.mark.slow
def test_one_process_trains_in_turn_and_changes_no_number(clips, tmp_path, monkeypatch):
    "Three trainings in one long-lived process that keeps its decoded clips give the features of fresh processes."
    import h5py, numpy as np
    monkeypatch.setenv('AVBT_WORKERS', '0')                  # reads its own clips: `train_parallel` keeps them decoded
    params = dict(data_source='ave', data=str(clips), scale='smoke', seeds=1)
    res = train_parallel(tmp_path / 'a', params, ['cpu'], ['table4'], log=lambda *a: None)
    assert [r.split('-')[0] for r in res['trained']] == ['baseline', 'noshare', 'agva']
    heads = [(tmp_path / 'a' / 'logs' / f'train-{r}.log').read_text().splitlines()[0] for r in res['trained']]
    assert len({h.split(',')[0] for h in heads}) == 1, heads                 # one process ...
    assert [h.split(', ')[1] for h in heads] == ['job 1', 'job 2', 'job 3']  # ... ran them in turn
    R = Repro('x', tmp_path / 'a', 'smoke', 'ave', clips, 'cpu', 1)
    jobs = {j['variant']: j for j in avbt_jobs(R, ['table4'])}
    for v in ('noshare', 'agva'):                                # again, each in a fresh process keeping nothing
        spec = json.dumps(dict(params, out=str(tmp_path / 'b'), device='cpu', job=jobs[v]))
        subprocess.run([sys.executable, '-c', 'import sys; from avbt_tacma.reproduce import _train_job; '
                        '_train_job(sys.argv[1])', spec], check=True, capture_output=True,
                       env={**__import__('os').environ, 'AVBT_CLIP_MEMORY_MB': '0'})
        name = next(r for r in res['trained'] if r.startswith(v))
        with h5py.File(tmp_path / 'a' / 'models' / 'avbt' / name / 'features.h5') as a, \
             h5py.File(next((tmp_path / 'b' / 'models' / 'avbt').glob(f'{v}-*/features.h5'))) as b:
            for k in ('audio', 'visual'): np.testing.assert_array_equal(a[k][()], b[k][()])


@pytest.mark.slow
def test_a_killed_training_process_is_named_and_the_next_job_gets_a_new_one(clips, tmp_path):
    "SIGKILL to the process in the middle of its second job: one line says so; the third job runs in a fresh process."
    import os, signal, threading, time
    params = dict(data_source='ave', data=str(clips), scale='smoke', seeds=1)
    out, got = tmp_path / 'run', {}
    th = threading.Thread(target=lambda: got.update(r=_catch(lambda: train_parallel(out, params, ['cpu'], ['table4'],
                                                                                     log=lambda *a: None, poll=0.1))))
    th.start()
    t0, pid = time.time(), None
    while pid is None and time.time() - t0 < 120:
        for f in (out / 'logs').glob('train-noshare-*.log') if (out / 'logs').exists() else []:
            head = f.read_text().splitlines()[:1]
            if head and head[0].endswith('job 2'): pid = int(head[0].split()[2].rstrip(','))
        time.sleep(0.05)
    assert pid, 'the second job never started'
    os.kill(pid, signal.SIGKILL); th.join(300)
    e = got['r']
    assert isinstance(e, AVBTError) and '\n' not in str(e), e
    assert '1 AV-BT training(s) failed: noshare-' in str(e) and 'killed by SIGKILL' in str(e), e
    agva = next((out / 'logs').glob('train-agva-*.log')).read_text().splitlines()[0]
    assert agva.endswith('job 1') and f'process {pid},' not in agva           # a fresh process took the next job
    again = train_parallel(out, params, ['cpu'], ['table4'], log=lambda *a: None)   # a re-run finishes the killed one
    assert [r.split('-')[0] for r in again['trained']] == ['noshare'] and len(again['reused']) == 2


def _catch(f):
    try: return f()
    except Exception as e: return e


@pytest.mark.parametrize('bad', ['lots', '-1', 'inf', 'nan'])
def test_a_bad_clip_memory_setting_is_one_line_before_any_work(clips, tmp_path, monkeypatch, bad):
    monkeypatch.setenv('AVBT_CLIP_MEMORY_MB', bad)
    params = dict(data_source='ave', data=str(clips), scale='smoke', seeds=1)
    with pytest.raises(AVBTError) as e: train_parallel(tmp_path / 'run', params, ['cpu'], ['table4'], log=print)
    assert '\n' not in str(e.value) and f"AVBT_CLIP_MEMORY_MB={bad!r}" in str(e.value)
    assert not (tmp_path / 'run' / 'cache').exists() and not (tmp_path / 'run' / 'models').exists()
