("The reproduction driver: dependency resolution, up-to-date skipping, failure handling (tiny notebooks), and one "
 "end-to-end run.")
import json, os, subprocess, sys, time
from pathlib import Path
import pytest
from avbt_tacma.core import AVBTError
from avbt_tacma.steps import Step, run_steps, plan, STEPS, step_hash
from avbt_tacma.report import PAPER_VALUES, CLAIMS, UNTESTABLE, write_summary
from avbt_tacma.store import code_hash, module_closure
from avbt_tacma.scales import SCALES

def write_nb(path, params: str, body: str):
    cell = lambda src, tags: {'cell_type': 'code', 'metadata': {'tags': tags}, 'source': src, 'outputs': [],
                              'execution_count': None}
    nb = {'cells': [cell(params, ['parameters']), cell(body, [])], 'nbformat': 4, 'nbformat_minor': 4,
          'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}}}
    Path(path).write_text(json.dumps(nb))

# each notebook appends its name to runs.log, so a test sees exactly what executed
LOG = "from pathlib import Path\nopen(Path(out, 'runs.log'), 'a').write({name!r} + '\\n')\n"

@pytest.fixture
def graph(tmp_path):
    nbs = tmp_path / 'nbs'; nbs.mkdir()
    write_nb(nbs / 'a.ipynb', "out = ''\nscale = 'smoke'",
             LOG.format(name='a') + "Path(out, 'a.txt').write_text(scale)")
    write_nb(nbs / 'b.ipynb', "out = ''\nseeds = 1",
             LOG.format(name='b') + "Path(out, 'b.txt').write_text(Path(out, 'a.txt').read_text() + str(seeds))")
    write_nb(nbs / 'c.ipynb', "out = ''",
             LOG.format(name='c') + "Path(out, 'c.txt').write_text(Path(out, 'b.txt').read_text() + 'c')")
    write_nb(nbs / 'd.ipynb', "out = ''", LOG.format(name='d') + "Path(out, 'd.txt').write_text('d')")
    steps = (Step('a', 'a.ipynb', (), ('a.txt',)), Step('b', 'b.ipynb', ('a',), ('b.txt',)),
             Step('c', 'c.ipynb', ('b',), ('c.txt',)), Step('d', 'd.ipynb', (), ('d.txt',)))
    out = tmp_path / 'run'; out.mkdir()
    def run(params=None, **kw):
        if (out / 'runs.log').exists(): (out / 'runs.log').unlink()
        p = {'out': str(out), 'scale': 'smoke', 'seeds': 1, **(params or {})}
        res = run_steps(out, p, steps, notebooks=nbs, log=lambda *a: None, **kw)
        executed = (out / 'runs.log').read_text().split() if (out / 'runs.log').exists() else []
        assert executed == res['ran']
        return executed
    return nbs, out, steps, run

def test_plan_pulls_in_dependencies():
    assert [s.name for s in plan(only=['fig7'])] == ['data', 'avbt', 'table3', 'fig7']
    assert [s.name for s in plan(only=['table4', 'data'])] == ['data', 'avbt', 'table2', 'table4']
    with pytest.raises(AVBTError, match='unknown step'): plan(only=['tabel2'])

def test_only_then_up_to_date_then_changes(graph):
    nbs, out, steps, run = graph
    assert run(only=['b']) == ['a', 'b']                                # --only pulls in the dependency, nothing else
    assert not (out / 'c.txt').exists() and not (out / 'd.txt').exists()
    assert run() == ['c', 'd']                                           # a and b are up to date
    assert (out / 'c.txt').read_text() == 'smoke1c'
    assert run() == []                                                   # a second run executes nothing
    assert run({'seeds': 2}) == ['b', 'c']                               # only b declares seeds; c depends on b
    assert (out / 'c.txt').read_text() == 'smoke2c'
    assert run({'seeds': 2, 'scale': 'quick'}) == ['a', 'b', 'c']        # a declares scale; d does not
    (out / 'c.txt').unlink()
    assert run({'seeds': 2, 'scale': 'quick'}) == ['c']                  # a missing output re-runs its step only
    nb = json.loads((nbs / 'b.ipynb').read_text()); nb['cells'][1]['source'] += "\n# edited"
    (nbs / 'b.ipynb').write_text(json.dumps(nb))
    assert run({'seeds': 2, 'scale': 'quick'}) == ['b',
                                                   'c']             # an edited notebook re-runs with its dependants
    assert run({'seeds': 2, 'scale': 'quick'}, only=['b'], force=True) == ['b']   # --force: the named step only
    assert (out / 'notebooks' / 'b.ipynb').exists()
    assert json.loads((out / 'stamps' / 'b.json').read_text())['parameters'] == {'out': str(out), 'seeds': 2}

def test_failure_stops_with_path_and_keeps_outputs(graph):
    nbs, out, steps, run = graph
    write_nb(nbs / 'bad.ipynb', "out = ''", LOG.format(name='bad') + "raise ValueError('boom: the input is wrong')")
    steps2 = steps[:1] + (Step('bad', 'bad.ipynb', ('a',), ()), Step('after', 'd.ipynb', ('bad',), ('d.txt',)))
    with pytest.raises(AVBTError) as e:
        run_steps(out, dict(out=str(out), scale='smoke'), steps2, notebooks=nbs, log=lambda *a: None)
    msg = str(e.value)
    executed = out / 'notebooks' / 'bad.ipynb'
    assert 'notebook bad failed' in msg and 'ValueError: boom: the input is wrong' in msg and str(executed) in msg
    assert '\n' not in msg and executed.exists() and 'boom' in executed.read_text()
    assert (out / 'a.txt').exists() and (out / 'stamps' / 'a.json').exists()    # what was produced stays
    assert not (out / 'stamps' / 'bad.json').exists() and not (out / 'd.txt').exists()
    write_nb(nbs / 'bad.ipynb', "out = ''",
             LOG.format(name='bad'))         # fixed: the next run starts at the failed step
    (out / 'runs.log').unlink()
    res = run_steps(out, dict(out=str(out), scale='smoke'), steps2, notebooks=nbs, log=lambda *a: None)
    assert res['ran'] == ['bad', 'after'] and res['skipped'] == ['a']

# a notebook that logs when it starts and ends (wall-clock) and sleeps in between
TIMED = ("import time, json\nfrom pathlib import Path\nt0 = time.time(); time.sleep({sleep})\n{fail}"
         "open(Path(out, 'times.jsonl'), 'a').write(json.dumps([{name!r}, t0, time.time()]) + '\\n')\n"
         "Path(out, {name!r} + '.txt').write_text('x')")

def _times(out):
    return {n: (a, b) for n, a, b in map(json.loads, (out / 'times.jsonl').read_text().splitlines())}

def test_jobs_run_independent_steps_at_once(graph):
    "With jobs=2 two steps with no dependency between them overlap; a step waits for all its dependencies either way."
    nbs, out, _, _ = graph
    for n in 'pqr': write_nb(nbs / f'{n}.ipynb', "out = ''", TIMED.format(name=n, sleep=1.5, fail=''))
    steps = (Step('p', 'p.ipynb', (), ('p.txt',)), Step('q', 'q.ipynb', (), ('q.txt',)),
             Step('r', 'r.ipynb', ('p', 'q'), ('r.txt',)))
    for jobs, overlap in ((2, True), (1, False)):
        (out / 'times.jsonl').unlink(missing_ok=True)
        res = run_steps(out, {'out': str(out)}, steps, notebooks=nbs, log=lambda *a: None, jobs=jobs, force=True)
        t = _times(out)
        assert sorted(res['ran']) == ['p', 'q', 'r'] and res['ran'][-1] == 'r'
        assert (t['p'][0] < t['q'][1] and t['q'][0] < t['p'][1]) == overlap, (jobs, t)   # do p and q overlap in time?
        assert t['r'][0] >= max(t['p'][1], t['q'][1])                                     # r starts after both
    with pytest.raises(AVBTError, match='jobs must be at least 1'):
        run_steps(out, {'out': str(out)}, steps, notebooks=nbs, log=lambda *a: None, jobs=0)

def test_jobs_failure_lets_the_running_step_finish(graph):
    ("A failing step with jobs=2: the step running beside it finishes and keeps its stamp; nothing after the failure "
     "starts.")
    nbs, out, _, _ = graph
    write_nb(nbs / 'slow.ipynb', "out = ''", TIMED.format(name='slow', sleep=3, fail=''))
    write_nb(nbs / 'bad.ipynb', "out = ''", TIMED.format(name='bad', sleep=0, fail="raise ValueError('boom')\n"))
    write_nb(nbs / 'later.ipynb', "out = ''", TIMED.format(name='later', sleep=0, fail=''))
    steps = (Step('bad', 'bad.ipynb', (), ('bad.txt',)), Step('slow', 'slow.ipynb', (), ('slow.txt',)),
             Step('later', 'later.ipynb', ('bad',), ('later.txt',)))
    with pytest.raises(AVBTError, match='notebook bad failed.*boom'):
        run_steps(out, {'out': str(out)}, steps, notebooks=nbs, log=lambda *a: None, jobs=2)
    assert (out / 'stamps' / 'slow.json').exists() and (out / 'slow.txt').exists()
    assert not (out / 'stamps' / 'bad.json').exists() and not (out / 'later.txt').exists()

def test_missing_output_is_an_error(graph):
    nbs, out, steps, run = graph
    with pytest.raises(AVBTError, match=r"did not write nothing\.txt"):
        run_steps(out, dict(out=str(out)), (Step('d', 'd.ipynb', (), ('nothing.txt',)),), notebooks=nbs,
                  log=lambda *a: None)
    assert not (out / 'stamps' / 'd.json').exists()

def test_paper_values_complete():
    "Every number of Tables 2-5 (paper-notes section 5) is in PAPER_VALUES, with the quoted rows marked."
    v = {t: {r['key']: r['paper'] for r in PAPER_VALUES[t]} for t in ('table2', 'table3', 'table4', 'table5')}
    assert v['table2'] == {'avel_a': 59.5, 'avel_v': 55.3, 'avel_av': 71.3, 'probe_a': 63.5, 'probe_v': 61.0,
                           'probe_av': 75.6}
    assert sorted(v['table3'].values()) == [73.3, 74.8, 75.2, 75.2, 76.2, 76.6, 76.8, 77.2]
    assert [r['key'] for r in PAPER_VALUES['table3'] if not r['quoted']] == ['avbt_tacma']
    assert v['table4'] == {'baseline_av': 75.6, 'baseline_a': 63.5, 'baseline_v': 61.0, 'agva_av': 71.5,
                           'noshare_av': 72.5, 'noshare_a': 63.0, 'noshare_v': 60.4}
    assert list(v['table5'].values()) == [74.0, 74.5, 74.2, 74.3, 74.4, 75.6, 74.3, 74.7, 74.5, 74.4]
    assert PAPER_VALUES['fig6']['best_theta'] == 0.03 and PAPER_VALUES['fig6']['good_range'] == (0.01, 0.06)

def _avbt(*args, timeout=1500):
    r = subprocess.run([sys.executable, '-m', 'avbt_tacma.cli', *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r

@pytest.mark.slow
def test_reproduce_smoke_end_to_end(tmp_path):
    """The README's paper-scale command shape (`avbt reproduce --data <prepared cache>`) at the smoke scale, on a cache
    that `avbt prepare` made from `avbt synth` videos: every table, figure, the report and the model; a second run
    executes nothing."""
    _avbt('synth', '--out', tmp_path / 'syn', '--videos', 64, '--classes', 4, '--size', 64, '--fps', 8, '--workers', 2)
    _avbt('prepare', '--ave-root', tmp_path / 'syn', '--out', tmp_path / 'cache', '--size', 64, '--workers', 2)
    out = tmp_path / 'run'
    args = ['reproduce', '--scale', 'smoke', '--data', tmp_path / 'cache', '--out', out, '--device', 'cpu']
    t0 = time.time()
    r = _avbt(*args)
    print(f"smoke reproduce: {time.time() - t0:.0f} s")
    run = json.loads((out / 'run.json').read_text())
    assert (run['data_source'], run['real_ave'], run['source']) == ('cache', False, 'synthetic cache (cache)')
    assert not (out / 'cache').exists() and not (out / 'data').exists()     # the given cache is used, not re-made
    for t in ('table2', 'table3', 'table4', 'table5'):
        assert (out / 'tables' / f'{t}.csv').exists() and (out / 'tables' / f'{t}.md').exists()
    for s in STEPS:
        for o in s.outputs: assert (out / o).exists() == (not s.scales or 'smoke' in s.scales), o   # weak: not at smoke
    text = (out / 'summary.md').read_text()
    assert '| paper | this run |' in text and 'scale smoke' in text and '(quoted)' in text
    assert 'synthetic cache' in text and 'AVE videos' not in text and 'AVE cache' not in text
    # synthetic data: no paper subtraction
    assert text.index('## Claims') < text.index('## Steps') and 'Δ' not in text
    assert '| majority label |' in (out / 'tables' / 'table3.md').read_text()
    import csv
    claims = list(csv.DictReader(open(out / 'tables' / 'claims.csv', encoding='utf-8')))
    verdicts = {'reproduced', 'direction only', 'not reproduced', 'inconclusive', 'not run', UNTESTABLE}
    assert len(claims) == len(CLAIMS)
    assert {c['verdict'] for c in claims} | {c['verdict_adjusted'] for c in claims} <= verdicts
    assert {c['key'] for c in claims if c['verdict'] == 'not run'} == {'tacma_over_cma_weak'}   # its step: quick, paper
    assert (out / 'tables' / 'claims.json').exists()
    assert '## Controls' in text and (out / 'tables' / 'controls.csv').exists()        # the head-level controls ran
    assert 'IPKernelApp' not in r.stdout + r.stderr and 'Traceback' not in r.stdout + r.stderr
    assert (out / 'models' / 'avbt_tacma.pt').stat().st_size > 10_000
    assert (out / 'summary.html').stat().st_size > 10_000
    for nb in (out / 'notebooks').glob('*.ipynb'):                       # executed notebooks: no warnings, no strays
        outs = [o for c in json.loads(nb.read_text())['cells'] for o in c.get('outputs', [])]
        assert not [o for o in outs if o.get('name') == 'stderr'], nb.name
        assert not any('PosixPath' in str(o.get('data', {}).get('text/plain', '')) for o in outs), nb.name
    from conftest import CHROMIUM, browse
    if CHROMIUM is not None:                                               # the report as a reader opens it
        page = browse([(out / 'summary.html').as_uri()])[(out / 'summary.html').as_uri()]
        assert not page['errors'] and len(page['images']) >= 6 and all(ok for _, ok in page['images']), page
        assert '**' not in page['text'] and 'Claims' in page['text']
    r2 = _avbt(*args, timeout=600)
    assert 'ran 0 notebook(s)' in r2.stdout, r2.stdout + r2.stderr
    # a damaged run folder is not 'done': a deleted table JSON and a truncated model re-run exactly their steps
    (out / 'tables' / 'table3.json').unlink()
    m = out / 'models' / 'avbt_tacma.pt'; m.write_bytes(m.read_bytes()[:5000])
    r3 = _avbt(*args, timeout=900)
    at_smoke = [s for s in STEPS if not s.scales or 'smoke' in s.scales]
    assert f'ran 2 notebook(s), {len(at_smoke) - 2} up to date' in r3.stdout, r3.stdout + r3.stderr
    assert 'tables/table3.json is missing' in r3.stdout and 'models/avbt_tacma.pt does not load' in r3.stdout
    assert (out / 'tables' / 'table3.json').exists() and m.stat().st_size > 10_000

def test_data_source_prepared_cache_is_a_cache(tmp_path):
    ("A prepared cache holds an Annotations.txt too: its cache.json decides; a synthetic cache stays synthetic when "
     "moved.")
    from avbt_tacma.sources import data_source, is_real_ave, source_label
    from avbt_tacma.prepare import CACHE_FORMAT
    from avbt_tacma.core import AVBTError, save_json
    c = tmp_path / 'c'; c.mkdir(); (c / 'Annotations.txt').write_text('Category&VideoID&Quality&StartTime&EndTime\n')
    save_json(dict(format=CACHE_FORMAT, source=str(tmp_path / 'gone'), synthetic=True), c / 'cache.json')
    kind, p = data_source(c)
    assert (kind, is_real_ave(kind, p), source_label(kind, p, 'smoke')) == ('cache', False, 'synthetic cache (c)')
    save_json(dict(format=CACHE_FORMAT, source=str(tmp_path / 'gone'), synthetic=False), c / 'cache.json')
    assert is_real_ave(*data_source(c)) and source_label(*data_source(c), 'smoke') == 'AVE cache (c)'
    save_json(dict(format='something else'), c / 'cache.json')
    with pytest.raises(AVBTError, match='not written by avbt prepare'): data_source(c)
    (c / 'cache.json').write_text('{broken')
    with pytest.raises(AVBTError, match='unreadable'): data_source(c)
    (c / 'cache.json').unlink()
    assert data_source(c)[0] == 'ave'                                     # no cache.json: an AVE folder

def test_code_hash_follows_imports_and_ignores_docstrings(tmp_path, monkeypatch):
    ("A model's key follows the code it runs: the AV-BT closure leaves out the heads and the report; docstrings do "
     "not count.")
    assert 'report' not in module_closure('train_avbt') and 'train_heads' not in module_closure('train_avbt')
    import avbt_tacma, shutil, avbt_tacma.store as rp
    lib = tmp_path / 'avbt_tacma'; shutil.copytree(Path(avbt_tacma.__file__).parent, lib)
    monkeypatch.setattr(rp, '_lib_dir', lambda: lib); rp._module_code.cache_clear()
    h_avbt, h_heads = code_hash('train_avbt'), code_hash('train_heads')
    f = lib / 'avbt.py'; f.write_text(f.read_text().replace('"""', '"""Edited docstring. ', 1))
    rp._module_code.cache_clear()
    assert code_hash('train_avbt') == h_avbt                          # a docstring edit retrains nothing
    f.write_text(f.read_text() + "\nEXTRA = 1\n"); rp._module_code.cache_clear()
    assert code_hash('train_avbt') != h_avbt and code_hash('train_heads') == h_heads   # code: only its dependants
    rp._module_code.cache_clear()

def test_default_scale_is_the_cli_default():
    ("`avbt reproduce` without flags runs the `default` scale; smoke stays the smallest; rehearsal keeps the paper's "
     "models.")
    from avbt_tacma.reproduce import reproduce_parser
    import argparse
    assert reproduce_parser(argparse.ArgumentParser()).parse_args([]).scale == 'default'
    assert SCALES['smoke']['videos'] < SCALES['default']['videos'] <= SCALES['quick']['videos']
    assert SCALES['default']['seeds'] >= 3 and SCALES['default']['avbt_seeds'] >= 3
    assert SCALES['rehearsal']['avbt'] == SCALES['paper']['avbt'] == 'paper' and SCALES['paper']['avbt_seeds'] == 3

@pytest.mark.slow
def test_interrupted_run_resumes_avbt_training(tmp_path):
    "Ctrl-C in the middle of an AV-BT training: one line, no traceback; the same command then resumes that training."
    import signal
    out = tmp_path / 'run'
    cmd = [sys.executable, '-m', 'avbt_tacma.cli', 'reproduce', '--scale', 'smoke', '--only', 'avbt', '--out',
           str(out), '--device', 'cpu',
           '--jobs', '1']                                                   # the training runs inside the notebook
    # a test run started in the background (`cmd &`) inherits an ignored SIGINT: give the child the default back
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.time()
    while time.time() - t0 < 900 and not list((out / 'models' / 'avbt').glob('baseline-*/checkpoint.pt')):
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    first = p.communicate(timeout=120)[0]
    run = next((out / 'models' / 'avbt').glob('baseline-*'))
    assert p.returncode == 130 and 'interrupted' in first, first
    assert 'Traceback' not in first and 'ZMQError' not in first, first
    assert not (run / 'avbt.pt').exists()                                   # stopped inside the training
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert 'resuming the killed training' in (out / 'notebooks' / '01_avbt.ipynb').read_text()
    steps = [l.split(',')[1] for l in (run / 'log.csv').read_text().splitlines()[1:]]
    assert (run / 'avbt.pt').exists() and len(steps) == len(set(steps))       # no step logged twice

def test_default_and_quick_scales_split_for_verdicts():
    ("`default` and `quick` hold out 15% of the synthetic clips for test (not 10%), PSP gets its smaller lr, and "
     "their clips are rendering (b) of `ave-balance`.")
    from avbt_tacma.sources import synthetic_dir
    for s in ('default', 'quick'):
        S = SCALES[s]
        assert S['split'][2] >= 0.15 and S['seeds'] >= 3 and S['avbt_seeds'] >= 3
        assert S['head_lrs']['psp'] < S['head_lr']
        bg = f"-bg{S['background_clips']}" if S.get('background_clips') else ''   # quick: the weak step's clips
        assert synthetic_dir('/x', s).name.endswith('-split70-15-15' + bg)
        assert S['latent'] == 'ave-balance' and '-latent-ave-balance-r' in synthetic_dir('/x', s).name  # rendering (b)
    assert 'split' not in SCALES['smoke'] and not synthetic_dir('/x', 'smoke').name.endswith('20')

def test_every_head_gets_the_same_seeds(tmp_path):
    "Equal treatment: in Table 3 and the weak step every head trains the scale's head seeds (none capped per head)."
    from avbt_tacma.store import Repro
    from avbt_tacma.features import save_features
    from avbt_tacma.train_heads import synthetic_features
    fs = synthetic_features(40, n_classes=3, d_a=8, d_v=8, spatial=(2, 2), seed=0, n_background=4)
    f = tmp_path / 'features.h5'
    save_features(f, fs.audio, fs.visual, fs.labels, fs.splits, fs.class_names, noisy=fs.noisy)
    for scale in ('default', 'quick'):
        R = Repro('table3', tmp_path / scale, scale, 'features', f, 'cpu')
        want = list(range(SCALES[scale]['seeds']))
        for setting in ('supervised', 'weak'):
            for head in ('tacma', 'psp', 'psp_avps', 'avel', 'cmbs', 'probe_av'):
                if setting == 'weak' and head == 'psp_avps': continue
                got = [r['seed'] for r in R.heads(f, head, setting=setting, epochs=1)['per_seed']]
                assert got == want, (scale, setting, head, got)
