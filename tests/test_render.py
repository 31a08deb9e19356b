"Rendering (b) of the known-answer latents: decoded presence equals the latents, confusable pairs, cues, bad knobs."
import json
from dataclasses import asdict
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from avbt_tacma.core import AVBTError
from avbt_tacma.latent import LatentConfig, CUES, codes, sample_latents
from avbt_tacma.synth import render_clip, render_latents, write_mp4, NOISY_LIST, AUD_LEVEL
from tests.conftest import run_main

NONE = -np.ones(10, int)


def _per_second(diff, fps, block=4):
    "Per second, the mean absolute value of a frame difference averaged over blocks (codec noise averages out)."
    F, H, W, C = diff.shape
    b = diff.astype(np.float64).reshape(F, H // block, block, W // block, block, C).mean((2, 4))
    return np.abs(b).reshape(10, -1).mean(1)


@pytest.mark.parametrize('lag', [0, 2])
def test_decoded_mp4_shows_exactly_the_latents(tmp_path, lag):
    "Each clip of a rendered set decodes with the project's decoder; object pixels and sound sit where the latents say."
    from avbt_tacma.video import decode_clip
    cfg = LatentConfig(classes=4, mu_a=6, mu_v=6, q_a=0.3, q_v=0.3, distractors=0.3, cue='hue', seed=2, lag_v=lag)
    size, fps = 32, 4
    render_latents(cfg, tmp_path / 's', videos=4, size=size, fps=fps, sample_rate=16000, background_clips=2,
                   workers=1, progress=False)
    meta = json.loads((tmp_path / 's' / 'synth_meta.json').read_text())
    clips = meta['videos'] + meta['background_videos']
    assert (tmp_path / 's' / NOISY_LIST).read_text().split() == [c['video_id'] for c in meta['background_videos']]
    assert all(np.array(c['labels']).max() == 4 and np.array(c['labels']).min() == 4 for c in meta['background_videos'])
    shown_any = {m: 0 for m in 'av'}
    for i, c in enumerate(clips):
        sv, sa = np.array(c['shown_v']), np.array(c['shown_a'])
        shown_any['v'] += (sv >= 0).sum(); shown_any['a'] += (sa >= 0).sum()
        ref = tmp_path / f'ref{i}.mp4'                    # the same clip with nothing shown, through the same codec
        fr0, au0 = render_clip(cfg, NONE, NONE, i, size, fps, 16000)
        write_mp4(ref, fr0, au0, fps, 16000)
        fr, au, info = decode_clip(tmp_path / 's' / 'AVE' / f"{c['video_id']}.mp4", 10 * fps, size)
        gr, ga, _ = decode_clip(ref, 10 * fps, size)
        mass = _per_second(fr.astype(int) - gr, fps)
        assert ((mass > 4.5) == (sv >= 0)).all(), (i, mass.round(2), sv)
        rms = np.sqrt(((au[:160000] - ga[:160000]).reshape(10, -1) ** 2).mean(1))   # the sound alone, codec aside
        assert ((rms > AUD_LEVEL / 2) == (sa >= 0)).all(), (i, rms.round(3), sa)
    assert shown_any['v'] and shown_any['a'] and shown_any['v'] < 60 and shown_any['a'] < 60   # both cases seen
    if lag:                          # rendering (b) draws the lag: vision shows the unlagged visual state L s late
        lat0 = sample_latents(LatentConfig(**(asdict(cfg) | dict(lag_v=0))), 4)
        sv = np.array([c['shown_v'] for c in meta['videos']])
        assert (sv[:, lag:] == lat0['shown_v'][:, :-lag]).all() and (sv != lat0['shown_v']).any()


@pytest.mark.parametrize('modality', ['a', 'v'])
def test_confusable_pair_renders_identically_in_its_modality_only(modality):
    cfg = LatentConfig(classes=4, mu_a=3, mu_v=3, **{f'rho_{modality}': 1.0})
    g = codes(cfg)[0 if modality == 'a' else 1]
    b = int(np.flatnonzero(g != np.arange(4))[0])
    a = int(g[b])                                        # b renders with a's code in this modality
    assert a != b
    fa, aa = render_clip(cfg, np.full(10, a), np.full(10, a), 5, 32, 2, 16000)
    fb, ab = render_clip(cfg, np.full(10, b), np.full(10, b), 5, 32, 2, 16000)
    same, other = ((aa, ab), (fa, fb)) if modality == 'a' else ((fa, fb), (aa, ab))
    assert np.array_equal(*same)
    assert not np.array_equal(*other)


def _features(cue, classes=4, per_class=8, size=48):
    "(mean hue, rotation-invariant outline harmonics 3..8) of the object in one frame of clips of each class."
    import colorsys
    cfg = LatentConfig(classes=classes, mu_v=8, cue=cue, seed=1)
    hues, shapes, y = [], [], []
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(classes):
        for k in range(per_class):
            i = c * per_class + k
            fr, _ = render_clip(cfg, np.full(10, c), NONE, i, size, 1, 16000)
            f0, _ = render_clip(cfg, NONE, NONE, i, size, 1, 16000)
            d = np.abs(fr[0].astype(int) - f0[0]).sum(-1)
            mask = d > 20
            rgb = fr[0][mask].mean(0) / 255
            hues.append(colorsys.rgb_to_hsv(*rgb)[0])
            cy, cx = yy[mask].mean(), xx[mask].mean()
            th, r = np.arctan2(yy[mask] - cy, xx[mask] - cx), np.hypot(yy[mask] - cy, xx[mask] - cx)
            shapes.append([abs((r ** 2 * np.exp(1j * n * th)).sum()) / (r ** 2).sum() for n in range(3, 9)])
            y.append(c)
    h = np.array(hues) * 2 * np.pi
    return np.stack([np.cos(h), np.sin(h)], 1), np.array(shapes), np.array(y)


def _loo_nearest_centroid(x, y):
    "Leave-one-out accuracy of the nearest class centroid (features standardised)."
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    hit = 0
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        cen = np.stack([x[keep & (y == c)].mean(0) for c in np.unique(y)])
        hit += np.argmin(((cen - x[i]) ** 2).sum(1)) == y[i]
    return hit / len(y)


def test_hue_cue_is_in_the_hue_not_the_shape():
    hue, shape, y = _features('hue')
    assert _loo_nearest_centroid(hue, y) >= 0.95
    assert _loo_nearest_centroid(shape, y) <= 0.55                 # chance: 0.25


def test_orientation_cue_is_the_long_axis():
    "cue = orientation: the object's principal axis (second moments of its mask) gives the code, mod 180 degrees."
    cfg, K, size = LatentConfig(classes=4, mu_v=8, cue='orientation', seed=4), 4, 48
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(K):
        for i in range(6):
            fr, _ = render_clip(cfg, np.full(10, c), NONE, 100 + i, size, 1, 16000)
            f0, _ = render_clip(cfg, NONE, NONE, 100 + i, size, 1, 16000)
            m = np.abs(fr[0].astype(int) - f0[0]).sum(-1) > 20
            dx, dy = xx[m] - xx[m].mean(), yy[m] - yy[m].mean()
            axis = 0.5 * np.arctan2(2 * (dx * dy).mean(), (dx ** 2).mean() - (dy ** 2).mean())
            err = (axis - np.pi * c / K + np.pi / 2) % np.pi - np.pi / 2
            assert abs(err) < np.pi / (2 * K), (c, i, np.degrees(axis))


def test_shape_cue_is_in_the_shape_not_the_hue():
    hue, shape, y = _features('shape')
    assert _loo_nearest_centroid(shape, y) >= 0.9
    assert _loo_nearest_centroid(hue, y) <= 0.55


KNOBS = ('q_a', 'q_v', 'rho_a', 'rho_v', 'distractors', 'mu_a', 'mu_v')


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(KNOBS), st.one_of(st.floats(-10, -1e-6), st.floats(20.001, 1e6)))
def test_bad_knob_is_one_line_and_writes_nothing(tmp_path_factory, knob, value):
    out = tmp_path_factory.mktemp('bad') / 'set'
    with pytest.raises(AVBTError) as e:
        render_latents(LatentConfig(classes=4, **{knob: value}), out, videos=2, size=32, fps=1, progress=False)
    assert '\n' not in str(e.value) and str(e.value).startswith(f'{knob} = ')
    assert not out.exists()


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(('cue', 'classes', 'second_event', 'nuisance')), st.data())
def test_other_bad_knobs_are_refused_before_writing(tmp_path_factory, knob, data):
    "Bad knobs, and knobs rendering (b) cannot draw (a second event, a per-clip nuisance): one line, nothing written."
    value = data.draw({'cue': st.text(min_size=1, max_size=8).filter(lambda s: s not in CUES),
                       'classes': st.one_of(st.integers(-5, 1), st.integers(29, 100)),
                       'second_event': st.floats(1e-3, 1), 'nuisance': st.floats(1e-3, 3)}[knob])
    out = tmp_path_factory.mktemp('bad') / 'set'
    with pytest.raises(AVBTError) as e:
        render_latents(LatentConfig(**({'classes': 4} | {knob: value})), out, videos=2, size=32, fps=1, progress=False)
    assert '\n' not in str(e.value) and str(e.value).startswith(f'{knob} = ')
    assert not out.exists()


def test_synth_preset_render_cli(tmp_path, capsys):
    rc, _, err = run_main(capsys, 'synth', '--preset', 'temporal-pos', '--render', 'video', '--out', tmp_path / 'x')
    assert rc != 0 and len(err.strip().splitlines()) == 1 and 'second_event' in err and not (tmp_path / 'x').exists()
    rc, _, err = run_main(capsys, 'synth', '--preset', 'aug-hue-pos', '--classes', '5', '--out', tmp_path / 'x')
    assert rc != 0 and 'drop --classes' in err and not (tmp_path / 'x').exists()
    rc, _, err = run_main(capsys, 'synth', '--render', 'video', '--out', tmp_path / 'x')
    assert rc != 0 and '--render needs --preset' in err and not (tmp_path / 'x').exists()
    rc, out, err = run_main(capsys, 'synth', '--preset', 'aug-shape-neg', '--render', 'video', '--videos', '10',
                            '--size', '32', '--fps', '2', '--workers', '1', '--background-clips', '1',
                            '--out', tmp_path / 'v')
    assert rc == 0, err
    known = json.loads((tmp_path / 'v' / 'known.json').read_text())
    assert known['config']['latent']['cue'] == 'shape' and known['config']['background_clips'] == 1
    assert len(list((tmp_path / 'v' / 'AVE').glob('*.mp4'))) == 11
    k = known['known_population']
    assert k['clips'] == 2000 and k['majority'] < min(k['audio'], k['visual']) < k['audio_visual']


def test_background_clips_join_the_weak_training_set(tmp_path):
    "Rendering (a) with background-only clips: `load_features(weak=True)` appends them to the train split, label bg."
    from avbt_tacma.known import write_known
    from avbt_tacma.features import load_features
    from avbt_tacma.ave import BG_INDEX
    write_known(tmp_path / 'k', 'fusion-pos', clips=100, windows=(0,), background_clips=40)
    fs = load_features(tmp_path / 'k', weak=True)
    a, v, yv = fs.weak_train()
    n_train = len(fs.splits['train'])
    assert len(a) == len(v) == len(yv) == n_train + 40
    assert (yv[n_train:].argmax(1) == BG_INDEX).all() and (yv[n_train:].sum(1) == 1).all()
    energy = lambda x: float((x.astype(np.float64) ** 2).sum(-1).mean())   # d + mu^2 x (share of seconds shown)
    assert energy(fs.noisy['audio']) < energy(a[:n_train]) - 1          # no event: fewer seconds carry the class
    assert fs.meta['background_clips'] == 40
