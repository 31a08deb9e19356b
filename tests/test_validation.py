"""Feature files (own and community layout), order files and split lists: every fault is one line (an `AVBTError`,
status 2 from the CLI) and a valid file loads unchanged. The oracle of the generated cases is written by hand here,
independently of `check_features`."""
import subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import h5py
from hypothesis import given, settings, strategies as st, HealthCheck
from avbt_tacma.core import AVBTError
from avbt_tacma.features import load_features, save_features, FeatureSet
from avbt_tacma.ave import CLASS_NAMES

CLI = "import sys; from avbt_tacma.cli import main; sys.exit(main(sys.argv[1:]))"
N, T = 6, 10


def one_line(e: BaseException) -> str:
    s = str(e)
    assert '\n' not in s and s, s
    return s


def community(d: Path, audio=None, visual=None, labels=None, orders=None) -> Path:
    "A community-layout folder; each part defaults to a valid one (6 clips, 3 / 1 / 2 split)."
    rng = np.random.default_rng(0)
    parts = {'audio_feature.h5': rng.normal(size=(N, T, 4)) if audio is None else audio,
             'visual_feature.h5': rng.normal(size=(N, T, 2, 2, 3)) if visual is None else visual,
             'labels.h5': np.eye(29)[np.arange(N * T).reshape(N, T) % 29] if labels is None else labels}
    d.mkdir(parents=True, exist_ok=True)
    for name, x in parts.items():
        with h5py.File(d / name, 'w') as f: f['avadataset'] = x
    for s, o in (orders or {'train': [0, 1, 2], 'val': [3], 'test': [4, 5]}).items():
        with h5py.File(d / f'{s}_order.h5', 'w') as f: f['order'] = o
    return d


def test_valid_community_folder_loads(tmp_path):
    fs = load_features(community(tmp_path))
    assert fs.audio.shape == (N, T, 4) and fs.visual.shape == (N, T, 2, 2, 3) and fs.labels.shape == (N, T, 29)
    assert {s: v.tolist() for s, v in fs.splits.items()} == {'train': [0, 1, 2], 'val': [3], 'test': [4, 5]}


def _nan(shape, where=(2, 3)):
    x = np.random.default_rng(1).normal(size=shape)
    x[where] = np.nan
    return x

def _zero_row():
    y = np.eye(29)[np.full((N, T), 28)]
    y[2, 5] = 0
    return y

FAULTS = {  # name: (community() keyword arguments, what the one line says)
    'rows disagree': (dict(visual=np.zeros((N - 1, T, 2, 2, 3))), 'disagree on the number of clips: 6, 5, 6'),
    'labels as indices': (dict(labels=np.full((N, T), 28.)), 'look like class indices'),
    'labels too narrow': (dict(labels=np.eye(28)[np.zeros((N, T), int)]), 'labels have 28 columns but there are 29'),
    'labels too wide': (dict(labels=np.eye(30)[np.zeros((N, T), int)]), 'labels have 30 columns'),
    'all-zero label segment': (dict(labels=_zero_row()), 'no class, not even background (the first: row 2, segment 5)'),
    'two classes in a segment': (dict(labels=np.ones((N, T, 29))), 'more than one class'),
    'soft labels': (dict(labels=np.full((N, T, 29), 1 / 29)), 'one-hot (0 or 1)'),
    'order out of range': (dict(orders={'train': [0, 6], 'val': [3], 'test': [4]}), 'row index 6 out of range'),
    'negative order': (dict(orders={'train': [0, -1], 'val': [3], 'test': [4]}), 'negative row index -1'),
    'fractional order': (dict(orders={'train': [0, 1.5], 'val': [3], 'test': [4]}), 'whole numbers, got 1.5'),
    'string order': (dict(orders={'train': np.array([b'0', b'1']), 'val': [3], 'test': [4]}), 'whole numbers'),
    'order listed twice': (dict(orders={'train': [0, 0], 'val': [3], 'test': [4]}), 'row 0 is listed 2 times'),
    'test order equals train': (dict(orders={'train': [0, 1], 'val': [3], 'test': [0, 1]}),
                                '2 row(s) in both train and test'),
    'zero rows': (dict(audio=np.zeros((0, T, 4)), visual=np.zeros((0, T, 2, 2, 3)), labels=np.zeros((0, T, 29)),
                       orders={'train': [], 'val': [], 'test': []}), 'no clips (0 rows)'),
    '2-D audio': (dict(audio=np.zeros((N, T))), 'audio features must be [clips, segments, width] (3-D)'),
    '4-D visual': (dict(visual=np.zeros((N, T, 7, 512))), 'visual features must be'),
    'time lengths differ': (dict(audio=np.zeros((N, 9, 4))), 'segments per clip: 9, 10, 10'),
    'NaN audio': (dict(audio=_nan((N, T, 4))),
                  'audio features holds NaN or Inf values (1 of 6 rows, the first is row 2)'),
    'Inf visual': (dict(visual=np.where(_nan((N, T, 2, 2, 3)) > 9, 0, np.inf)), 'visual features holds NaN or Inf'),
    'string audio': (dict(audio=np.array([[b'x'] * T] * N)), "'avadataset' holds |S1 values, not numbers"),
    'scalar labels': (dict(labels=np.float64(3)), 'labels is a single number'),
}


@pytest.mark.parametrize('name', list(FAULTS))
def test_community_fault_is_one_line(tmp_path, name):
    kw, msg = FAULTS[name]
    with pytest.raises(AVBTError) as e: load_features(community(tmp_path / 'f', **kw))
    assert msg in one_line(e.value) and str(tmp_path / 'f') in str(e.value)


@pytest.mark.parametrize('name', ['labels as indices', 'test order equals train', '4-D visual', 'NaN audio'])
def test_cli_train_head_refuses_with_one_line(tmp_path, name):
    kw, msg = FAULTS[name]
    r = subprocess.run([sys.executable, '-c', CLI, 'train-head', '--features', str(community(tmp_path / 'f', **kw)),
                        '--out', str(tmp_path / 'r'), '--epochs', '1', '--seeds', '1', '--no-progress'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr
    assert r.stderr.startswith('avbt train-head: error: ') and msg in r.stderr
    assert not list((tmp_path / 'r').glob('*.pt')) if (tmp_path / 'r').exists() else True


def own(path, audio, visual, labels, orders, names=None):
    "An own-layout file written with h5py directly (no checks on the way in)."
    import json
    with h5py.File(path, 'w') as f:
        f['audio'], f['visual'], f['labels'] = audio, visual, labels
        for s, o in orders.items(): f[f'{s}_order'] = o
        if names is not None: f.attrs['class_names'] = json.dumps(names)
    return path


def test_own_file_class_names_must_match_the_label_width(tmp_path):
    y = np.eye(29)[np.full((N, T), 28)]
    p = own(tmp_path / 'f.h5', np.zeros((N, T, 3)), np.zeros((N, T, 3)), y, {'train': [0]}, names=CLASS_NAMES[:-1])
    with pytest.raises(AVBTError, match='labels have 29 columns but there are 28 class names'): load_features(p)
    p = own(tmp_path / 'g.h5', np.zeros((N, T, 3)), np.zeros((N, T, 3)), y, {'train': [0]},
            names=CLASS_NAMES[1:] + ['x'])
    with pytest.raises(AVBTError, match="no background column: the last class is 'x'"): load_features(p)


def test_save_features_refuses_what_load_would_refuse_and_writes_nothing(tmp_path):
    y = np.full((N, T), 28)                                         # class indices: turned into one-hot
    p = save_features(tmp_path / 'ok.h5', np.zeros((N, T, 3)), np.zeros((N, T, 3)), y, {'train': [0, 1], 'test': [2]})
    fs = load_features(p)
    assert fs.labels.shape == (N, T, 29) and (fs.labels.argmax(-1) == 28).all()
    with pytest.raises(AVBTError, match='both train and test'):
        save_features(tmp_path / 'bad.h5', np.zeros((N, T, 3)), np.zeros((N, T, 3)), y, {'train': [0, 1], 'test': [1]})
    with pytest.raises(AVBTError, match='label indices must be in 0..28'):
        save_features(tmp_path / 'bad.h5', np.zeros((N, T, 3)), np.zeros((N, T, 3)), y + 1, {'train': [0]})
    assert not (tmp_path / 'bad.h5').exists() and [q.name for q in tmp_path.iterdir()] == ['ok.h5']


# --- generated files: load iff the hand-written oracle says valid; else exactly one line ---------------------

@st.composite
def feature_files(draw):
    n = draw(st.integers(0, 5))
    ta, tv, ty = (draw(st.sampled_from([T, T, T, 9])) for _ in range(3))
    na, nv, ny = (draw(st.sampled_from([n, n, n, max(n - 1, 0)])) for _ in range(3))
    arank = draw(st.sampled_from([3, 3, 2]))
    vrank = draw(st.sampled_from([3, 5, 4]))
    width = draw(st.sampled_from([29, 29, 28, 2]))
    form = draw(st.sampled_from(['onehot', 'onehot', 'indices', 'zero_segment', 'two_hot', 'nan']))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    audio = rng.normal(size=(na, ta, 3)[:arank])
    visual = rng.normal(size={3: (nv, tv, 4), 4: (nv, tv, 2, 4), 5: (nv, tv, 2, 2, 4)}[vrank])
    if draw(st.booleans()) and audio.size: audio.flat[draw(st.integers(0, audio.size - 1))] = draw(
        st.sampled_from([np.nan, np.inf, -np.inf, 1.0]))
    cls = rng.integers(0, width, (ny, ty))
    labels = np.eye(width)[cls]
    if form == 'indices': labels = cls.astype(np.float64)
    elif form == 'zero_segment' and ny: labels[0, 0] = 0
    elif form == 'two_hot' and ny: labels[-1, -1, :2] = 1
    elif form == 'nan' and ny: labels[0, 0, 0] = np.nan
    kinds = st.sampled_from(['ok', 'ok', 'ok', 'negative', 'high', 'float', 'dup'])
    orders = {}
    for s in draw(st.sets(st.sampled_from(['train', 'val', 'test']), min_size=1)):
        rows = draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=n, unique=True)) if n else []
        kind = draw(kinds)
        if kind == 'negative': rows = rows + [-1]
        elif kind == 'high': rows = rows + [n]
        elif kind == 'float': rows = np.array(rows + [0.5])
        elif kind == 'dup' and rows: rows = rows + rows[:1]
        orders[s] = np.asarray(rows, dtype=np.int64 if kind != 'float' else np.float64)
    names = CLASS_NAMES if width == 29 else [f'c{i}' for i in range(width - 1)] + ['Background']
    return audio, visual, labels, orders, names


def oracle(audio, visual, labels, orders, names) -> bool:
    "Whether a file with these parts is valid, from the rules as the docs state them."
    if audio.ndim != 3 or visual.ndim not in (3, 5) or labels.ndim != 3: return False
    if not (len(audio) == len(visual) == len(labels) > 0): return False
    if not audio.shape[1] == visual.shape[1] == labels.shape[1]: return False
    if labels.shape[2] != len(names): return False
    if not all(np.isfinite(x).all() for x in (audio, visual, labels)): return False
    if not ((labels.sum(-1) == 1).all() and np.isin(labels, (0, 1)).all()): return False
    seen = set()
    for o in orders.values():
        if any(float(i) != int(i) or not 0 <= i < len(audio) for i in o) or len(set(o.tolist())) != len(o): return False
        if seen & set(o.tolist()): return False
        seen |= set(o.tolist())
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=feature_files())
def test_generated_feature_files_load_iff_valid(tmp_path, parts):
    audio, visual, labels, orders, names = parts
    p = own(tmp_path / 'f.h5', audio, visual, labels, orders, names)
    try: fs = load_features(p)
    except AVBTError as e:
        one_line(e)
        assert not oracle(*parts), e
        return
    assert oracle(*parts)
    assert np.array_equal(fs.labels, labels.astype(np.float32)) and fs.audio.dtype == np.float32
    assert {s: v.tolist() for s, v in fs.splits.items()} == {s: o.astype(int).tolist() for s, o in orders.items()}


def test_fifo_or_link_loop_as_a_feature_file_is_one_line_and_never_blocks(tmp_path):
    import os
    os.mkfifo(tmp_path / 'f.h5')
    (tmp_path / 'loop.h5').symlink_to(tmp_path / 'loop.h5')
    with pytest.raises(AVBTError, match=r'f.h5: not a regular file'): load_features(tmp_path / 'f.h5')
    with pytest.raises(AVBTError, match=r'loop.h5: a loop of symbolic links'): load_features(tmp_path / 'loop.h5')
    d = community(tmp_path / 'c')
    (d / 'labels.h5').unlink()
    os.mkfifo(d / 'labels.h5')
    with pytest.raises(AVBTError, match=r'labels.h5: not a regular file'): load_features(d)
