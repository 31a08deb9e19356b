"""Training heads on synthetic features: every head learns, seeds, model selection, checkpoints, CLI and bad input."""
import json, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
from avbt_tacma.core import AVBTError, load_checkpoint
from avbt_tacma.features import save_features, load_features
from avbt_tacma.train_heads import synthetic_features, train_head, train_seeds, summarize, HEADS
from avbt_tacma.evaluate import (segment_accuracy, per_class_accuracy, confusion_matrix, predict, load_run,
                                 results_table, video_predictions)
from avbt_tacma.cli import main as avbt

FAST = dict(epochs=16, batch_size=32, lr=2e-3, progress=False)
SMALL = {'tacma': dict(d_l=32, d_h=32, d_e=32, mlp=(64, 32)), 'cma': dict(d_l=32, d_h=32, d_e=32, mlp=(64, 32)),
         'psp': dict(d_hidden=32, d_psp=64, d_att=32, k=4), 'psp_avps': dict(d_hidden=32, d_psp=64, d_att=32, k=4),
         'avel': dict(d_att=32, k=4, d_hidden=32)}           # k = 2 x 2 regions: the official attention axis


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)     # tiny models: one thread is far faster here
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def fs():
    return synthetic_features(240, spatial=(2, 2), seed=0)


def _majority(fs):
    y = fs.labels[fs.splits['test']].argmax(-1)
    return np.bincount(y.ravel()).max() / y.size


@pytest.mark.parametrize('head', list(SMALL))
def test_every_head_learns_with_seeds(fs, head, tmp_path):
    s = train_seeds(fs, head, seeds=2, out=tmp_path, **FAST, **SMALL[head])
    maj = _majority(fs)                                           # about 0.37 on this set
    assert s['test_acc_mean'] > maj + 0.25, (head, s['test_acc_mean'], maj)
    accs = [r['test_acc'] for r in s['per_seed']]
    assert s['test_acc_mean'] == pytest.approx(np.mean(accs)) and s['test_acc_std'] == pytest.approx(
        np.std(accs, ddof=1))
    assert s['std'] == 'sample (ddof=1)' and s['n_seeds'] == 2
    for r in s['per_seed']:                                       # val selection and test selection reported apart
        full = json.loads((tmp_path / f"{head}_seed{r['seed']}.json").read_text())
        h = full['history']
        assert r['val_acc'] == max(e['val_acc'] for e in h)
        first_best = next(e for e in h if e['val_acc'] == r['val_acc'])
        assert r['best_epoch'] == first_best['epoch'] and r['test_acc'] == first_best['test_acc']
        assert r['test_acc_select_on_test'] == max(e['test_acc'] for e in h) >= r['test_acc']
    assert (tmp_path / f'{head}_summary.json').exists()


def test_avel_needs_spatial_and_others_pool(fs):
    with pytest.raises(AVBTError, match='needs spatial'):
        train_head(fs.pooled(), 'avel', epochs=1, progress=False)
    r = train_head(fs, 'probe_v', epochs=1, progress=False)     # spatial input pooled for a vector head
    assert r['config']['spatial'] is False and r['config']['d_v'] == 32
    r = train_head(fs.pooled(), 'psp', epochs=1, progress=False, **SMALL['psp'])   # PSP on vectors: no attention
    assert r['config']['spatial'] is False and r['config']['head_kw']['spatial'] is False


def test_official_recipe(fs, tmp_path):
    from avbt_tacma.train_heads import recipe_for, table3_recipe, build_head
    r = train_head(fs, 'avel', epochs=2, progress=False, recipe='official', out=tmp_path, **SMALL['avel'])
    c = r['config']
    assert (c['recipe'], c['batch_size'], c['lr'], c['drop_last'],
            c['head_kw']['loss']) == ('official', 64, 1e-3, True, 'official')
    assert [h['lr'] for h in r['history']] == [1e-3, 1e-3]
    n_train = len(fs.splits['train'])
    assert n_train % 64 and r['config']['schedule'] == 'step_iter'          # the last partial batch is dropped
    p = train_head(fs, 'psp_avps', epochs=1, progress=False, recipe='official', **SMALL['psp'])['config']
    assert (p['epochs'], p['batch_size'], p['head_kw']['tau'], p['head_kw']['avps_weight']) == (1, 128, 0.099, 100.0)
    assert recipe_for('psp', 'official')['epochs'] == 300 and table3_recipe('avel', 'community') == 'official'
    with pytest.raises(AVBTError,
                       match='exists for'): train_head(fs, 'tacma', epochs=1, progress=False, recipe='official')
    f = train_head(fs, 'psp', epochs=3, progress=False, lr=2e-3, batch_size=32, fast=True, **SMALL['psp'])   # bf16 maps
    assert f['config']['head_kw']['fast'] is True and f['test_acc'] > _majority(fs) - 0.05
    m = build_head('avel', 32, 32, **c['head_kw'])                            # the checkpoint rebuilds from its config
    m.load_state_dict(load_checkpoint(tmp_path / 'avel_seed0.pt', kind='head')['model'])


def test_deterministic_and_checkpoint_roundtrip(fs, tmp_path):
    kw = dict(FAST, epochs=4, **SMALL['psp'])
    r1 = train_head(fs, 'psp', seed=3, out=tmp_path, **kw)
    r2 = train_head(fs, 'psp', seed=3, **kw)
    assert r1['history'] == r2['history']
    ck = load_checkpoint(tmp_path / 'psp_seed3.pt', kind='head')
    assert ck['config']['head'] == 'psp' and ck['config']['head_kw'] == {**SMALL['psp'], 'spatial': True}
    assert ck['class_names'][28] == 'Background' and ck['result']['test_acc'] == r1['test_acc']
    model, res = load_run(tmp_path)
    preds, probs = predict(model, fs, 'test')
    assert segment_accuracy(preds, fs.labels[fs.splits['test']]) == pytest.approx(res['test_acc'], abs=1e-12)
    assert probs.shape == (len(fs.splits['test']), 10, 29)
    vp = video_predictions(preds, fs, 'test')
    assert list(vp.video_id[:1]) == [fs.video_ids[fs.splits['test'][0]]]


def test_metrics_by_hand():
    y = np.array([[3, 3, 28, 28], [5, 5, 5, 28]])
    p = np.array([[3, 28, 28, 28], [5, 5, 3, 28]])
    assert segment_accuracy(p, y) == 6 / 8
    cm = confusion_matrix(p, y)
    assert cm.shape == (29, 29) and cm[3, 3] == 1 and cm[3, 28] == 1 and cm[5, 3] == 1 and cm[28, 28] == 3
    pc = per_class_accuracy(p, y)
    assert pc[3] == 0.5 and pc[5] == pytest.approx(2 / 3) and pc[28] == 1.0 and np.isnan(pc[0])


def test_results_table(tmp_path):
    res = [dict(head='tacma', seed=s, best_epoch=1, val_acc=v, test_acc=t, test_acc_select_on_test=t + 0.01,
                best_test_epoch=2, config={'head': 'tacma', 'seed': s}) for s, v, t in [(0, .7, .75), (1, .72, .77)]]
    s = summarize(res)
    assert s['test_acc_mean'] == pytest.approx(0.76) and s['test_acc_std'] == pytest.approx(np.std([.75, .77], ddof=1))
    (tmp_path / 'tacma_summary.json').write_text(json.dumps(s))
    df = results_table([json.loads(p.read_text()) for p in sorted(tmp_path.glob('*_summary.json'))])
    assert df.loc[0, 'test acc % (val-selected)'] == '76.00 ± 1.41'
    assert df.loc[0, 'test acc % (selected on test)'] == '77.00 ± 1.41'
    assert '| tacma | 2 |' in results_table([s], markdown=True)


@pytest.fixture(scope='module')
def feature_file(tmp_path_factory):
    d = tmp_path_factory.mktemp('feat')
    f = synthetic_features(80, seed=5)
    return save_features(d / 'f.h5', f.audio, f.visual, f.labels, f.splits, video_ids=f.video_ids)


def test_cli_trains_and_prints_table(feature_file, tmp_path, capsys):
    rc = avbt(['train-tacma', '--features', str(feature_file), '--out', str(tmp_path / 'run'), '--seeds', '2',
               '--epochs', '2', '--theta', '0.05', '--eq6', 'printed', '--no-progress', '--threads', '1'])
    assert rc == 0
    out = capsys.readouterr().out
    assert 'test accuracy' in out and '±' in out and 'selecting the checkpoint on test' in out
    s = json.loads((tmp_path / 'run' / 'tacma_summary.json').read_text())
    assert s['n_seeds'] == 2 and s['config']['head_kw'] == {'theta': 0.05, 'eq6': 'printed'}
    assert sorted(p.name for p in (tmp_path / 'run').glob('*.pt')) == ['tacma_seed0.pt', 'tacma_seed1.pt']


@pytest.mark.parametrize('args,msg', [
    (['--features', 'MISSING'], 'not found'),
    (['--theta', '-1'], '--theta must be'),
    (['--head', 'nope'], "unknown head 'nope'"),
    (['--head', 'avel'], 'needs spatial'),
    (['--head', 'psp', '--theta', '0.1'], 'applies to the tacma head only'),
    (['--tau', '0.1'], 'applies to psp'),
    (['--seeds', '0'], '--seeds must be'),
    (['--device', 'tpu9'], 'unknown device')])
def test_cli_bad_input_exits_2_with_one_line(feature_file, tmp_path, capsys, args, msg):
    base = {'--features': str(feature_file) if 'MISSING' not in args else str(tmp_path / 'missing.h5'),
            '--out': str(tmp_path / 'r')}
    argv = ['train-tacma', '--features', base['--features'], '--out', base['--out'], '--epochs', '1', '--seeds', '1',
            '--no-progress']
    argv += [a for a in args if a not in ('--features', 'MISSING')]
    assert avbt(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and msg in err and err.startswith('avbt train-tacma: error:')
    assert not (tmp_path / 'r').exists() or not list((tmp_path / 'r').glob('*.pt'))


def test_cli_exit_status_in_a_real_process(tmp_path):
    p = subprocess.run([sys.executable, '-c', 'import sys; from avbt_tacma.cli import main; sys.exit(main())',
                        'train-tacma',
                        '--features', str(tmp_path / 'none.h5'), '--out', str(tmp_path / 'r')], capture_output=True,
                       text=True)
    assert p.returncode == 2 and p.stderr.strip().count('\n') == 0 and 'feature file not found' in p.stderr
