"""Background-only clips through the video pipeline: the noisy list, `avbt prepare`, `avbt extract`, the weak
loader."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from avbt_tacma.core import AVBTError
from avbt_tacma.ave import NOISY_LIST, read_noisy_list, read_annotations, BG_INDEX
from avbt_tacma.features import load_features

IDS = st.text(st.characters(blacklist_categories=('Cs', 'Cc', 'Zs', 'Zl', 'Zp'), blacklist_characters='&\ufeff'),
              min_size=1, max_size=12).filter(lambda s: s.strip() == s and len(s.split()) == 1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(IDS, unique=True, max_size=8), pads=st.lists(st.sampled_from(['', ' ', '\t', '\r']), min_size=8,
                                                                 max_size=8),
       blanks=st.lists(st.booleans(), min_size=8, max_size=8), end=st.sampled_from(['', '\n', '\r\n']))
def test_noisy_list_reads_back_its_ids(tmp_path, ids, pads, blanks, end):
    "Any list of distinct ids, padded with spaces, blank lines and either line ending, reads back in order."
    lines = []
    for i, v in enumerate(ids):
        if blanks[i]: lines.append(pads[i])
        lines.append(pads[i] + v + pads[i])
    p = tmp_path / NOISY_LIST
    p.write_bytes(('\n'.join(lines) + end).encode())
    assert read_noisy_list(p) == ids


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(IDS, unique=True, min_size=1, max_size=6), data=st.data())
def test_noisy_list_bad_line_is_named(tmp_path, ids, data):
    "An id listed twice, or a line with two fields or an '&', stops with one line naming the file and that line."
    k = data.draw(st.integers(0, len(ids)))
    bad = data.draw(st.sampled_from(['twice', 'space', 'amp']))
    extra = {'twice': ids[0], 'space': f"{ids[0]} x", 'amp': f"Bark&{ids[0]}&good&0&10"}[bad]
    lines = ids[:k] + [extra] + ids[k:]
    if bad == 'twice' and k == 0: lines = ids[:1] + lines           # the repeat comes after the first
    p = tmp_path / NOISY_LIST
    p.write_text('\n'.join(lines) + '\n')
    n = lines.index(extra, 1 if bad == 'twice' else 0) + 1
    with pytest.raises(AVBTError, match=f"{NOISY_LIST}:{n}: ") as e: read_noisy_list(p)
    assert len(str(e.value).splitlines()) == 1


@pytest.fixture(scope='module')
def noisy_set(tmp_path_factory):
    "A rendered synthetic set (12 clips, 4 classes, 32 px) with 2 background-only clips and a third, corrupt, listed."
    from avbt_tacma.latent import LatentConfig
    from avbt_tacma.synth import render_latents
    out = tmp_path_factory.mktemp('noisy') / 'ave'
    cfg = LatentConfig(classes=4, mu_a=6, mu_v=6, q_a=0.3, q_v=0.3, cue='hue', seed=3)
    render_latents(cfg, out, videos=12, size=32, fps=8, sample_rate=16000, background_clips=2, workers=1,
                   progress=False)
    listed = read_noisy_list(out / NOISY_LIST)
    (out / 'AVE' / 'brokenclip.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' + bytes(200))   # a truncated mp4
    with open(out / NOISY_LIST, 'a') as f: f.write('brokenclip\n')
    return out, listed


def test_prepare_and_extract_carry_background_clips(noisy_set, tiny_avbt, tmp_path, caplog):
    "prepare decodes the listed clips outside the splits; extract writes them as noisy_*; the weak loader sees them."
    from avbt_tacma.prepare import prepare, open_cache
    from avbt_tacma.train_avbt import extract_features
    root, listed = noisy_set
    s = prepare(root, tmp_path / 'cache', size=32, workers=1, progress=False)
    assert (s['kept'], s['skipped'], s['noisy'], s['noisy_listed'], s['noisy_skipped']) == (12, 0, 2, 3, ['brokenclip'])
    assert 'background-only clips (noisySet.txt): 2 of 3, skipped brokenclip (corrupt)' in s['line']
    warned = [r.getMessage() for r in caplog.records if 'brokenclip' in r.getMessage()]
    assert len(warned) == 1 and len(warned[0].splitlines()) == 1
    c = open_cache(tmp_path / 'cache')
    assert c.noisy.tolist() == [12, 13] and [c.video_id(r) for r in c.noisy] == listed
    assert all((c.labels(r) == BG_INDEX).all() for r in c.noisy)
    in_splits = np.concatenate(list(c.splits.values()))
    assert sorted(in_splits.tolist()) == list(range(12))                     # never mixed into train/val/test
    f = extract_features(tiny_avbt / 'avbt.pt', tmp_path / 'cache', tmp_path / 'features.h5', device='cpu',
                         progress=False)
    fs = load_features(f, weak=True)
    assert fs.audio.shape[0] == 12 and not set(listed) & set(fs.video_ids)
    assert fs.noisy['audio'].shape == (2, 10, 16) and fs.noisy['visual'].shape == (2, 10, 16)
    assert (fs.noisy['video_labels'].argmax(-1) == BG_INDEX).all() and fs.noisy['video_labels'].sum() == 2
    assert fs.meta['background_clips'] == 2 and fs.meta['noisy_video_ids'] == listed
    a, v, y = fs.weak_train()
    n_train = len(fs.splits['train'])
    assert len(a) == len(v) == len(y) == n_train + 2 and (y[n_train:].argmax(-1) == BG_INDEX).all()
    # the same clips through the main rows' encoder: a background clip's features are its own, not a copy of a row's
    assert not any(np.allclose(fs.noisy['audio'][0], x) for x in fs.audio)
    plain = load_features(f)                                                  # the supervised setting: no noisy
    assert plain.noisy is None and np.array_equal(plain.audio, fs.audio)
    # noisy rows whose count does not match: one line naming the file
    import h5py
    with h5py.File(f, 'a') as h:
        x = h['noisy_audio'][:1]
        del h['noisy_audio']
        h['noisy_audio'] = x
    with pytest.raises(AVBTError, match=r"features\.h5 \(noisy_audio\): 1 noisy clips, but .* labels 2") as e:
        load_features(f, weak=True)
    assert len(str(e.value).splitlines()) == 1


def test_annotations_unchanged_by_the_noisy_list(noisy_set, tmp_path):
    "The cache's annotation rows are the AVE root's, whatever the noisy list says."
    from avbt_tacma.prepare import prepare, open_cache
    root, _ = noisy_set
    prepare(root, tmp_path / 'c', size=32, workers=1, progress=False, limit=3)
    c = open_cache(tmp_path / 'c')
    assert c.records == read_annotations(root / 'Annotations.txt') and c.available.tolist() == [0, 1, 2]
    assert len(c.noisy) == 2


def test_synth_cli_background_clips(tmp_path, capsys):
    "`avbt synth --background-clips N` without a preset writes N listed clips; with --like it is one line."
    from conftest import run_main
    rc, out, err = run_main(capsys, 'synth', '--out', tmp_path / 's', '--videos', 4, '--classes', 2, '--size', 32,
                            '--fps', 2, '--workers', 1, '--background-clips', 1)
    ids = read_noisy_list(tmp_path / 's' / NOISY_LIST)
    assert rc == 0 and len(ids) == 1 and (tmp_path / 's' / 'AVE' / f'{ids[0]}.mp4').exists()
    assert ids[0] not in {r.video_id for r in read_annotations(tmp_path / 's' / 'Annotations.txt')}
    rc, out, err = run_main(capsys, 'synth', '--out', tmp_path / 't', '--like', tmp_path / 's' / 'Annotations.txt',
                            '--background-clips', 1)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and '--background-clips does not apply to --like' in err


def test_a_scales_background_clips_reach_the_weak_training_set(tmp_path):
    "A scale's `background_clips`: its synthetic set, cache and extracted features carry them to `weak_train` only."
    from unittest import mock
    from avbt_tacma.scales import SCALES
    from avbt_tacma.store import Repro
    bg = dict(SCALES['smoke'], videos=16, classes=3, size=32, fps=4, avbt_epochs=1, avbt_batch=4, background_clips=2)
    with mock.patch.dict(SCALES, bg=bg):
        R = Repro.open('weak', 'synthetic', '', 'bg', 'cpu', 1, tmp_path)
        assert R.data.name.endswith('-bg2')
        fs = R.feature_set(R.features('baseline'), weak=True)
    n_train = len(fs.splits['train'])
    assert fs.audio.shape[0] == 16 and fs.noisy['audio'].shape[0] == 2 and fs.meta['background_clips'] == 2
    assert len(fs.weak_train()[0]) == n_train + 2
    assert fs.meta['noisy_video_ids'] == read_noisy_list(R.data / NOISY_LIST)
