"Known-answer data: knob validation (Hypothesis), the closed-form optimum against simulation, `avbt synth --preset`."
import json, subprocess, sys
from dataclasses import asdict
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from avbt_tacma.core import AVBTError
from avbt_tacma.latent import (LatentConfig, PRESETS, preset, sample_latents, render_features, bayes_accuracy,
                               posterior, mc_posterior)

KNOBS_01 = ('q_a', 'q_v', 'rho_a', 'rho_v', 'distractors', 'second_event')


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KNOBS_01 + ('mu_a', 'mu_v')), st.floats(-5, 25, allow_nan=False))
def test_knob_out_of_range_is_one_line_naming_it(knob, value):
    cfg = LatentConfig(**{knob: value, **({'q_v': 0.0} if knob == 'q_a' else {'q_a': 0.0} if knob == 'q_v' else {})})
    hi = 20 if knob.startswith('mu') else 1
    if 0 <= value <= hi: cfg.check(); return
    with pytest.raises(AVBTError) as e: cfg.check()
    msg = str(e.value)
    assert '\n' not in msg and msg.startswith(f'{knob} = ') and 'allowed' in msg


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1))
def test_presence_sum_over_one_is_refused(qa, qv):
    cfg = LatentConfig(q_a=qa, q_v=qv)
    if qa + qv <= 1: cfg.check(); return
    with pytest.raises(AVBTError, match=r'q_a \+ q_v <= 1'): cfg.check()


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 8), st.floats(0, 0.5), st.floats(0, 0.5), st.floats(0, 1), st.floats(0, 1), st.integers(0, 99))
def test_latents_keep_their_invariants(k, qa, qv, dis, two, seed):
    "In a span both modalities show the label's class; off a span a modality shows no class, its part's, or another."
    lat = sample_latents(LatentConfig(classes=k, q_a=qa, q_v=qv, distractors=dis, second_event=two, seed=seed), 200)
    y = lat['labels']
    ev = y < k
    for m in ('a', 'v'):
        s = lat[f'shown_{m}']
        assert (s[ev] == y[ev]).all() and ((s >= -1) & (s < k)).all()
    assert ev.any(1).all() or two > 0                   # a one-event clip always has its event
    assert (lat['cut'][~lat['two_events']] == 0).all()


def test_posterior_sums_to_one_and_matches_simulation():
    cfg = LatentConfig(classes=3, d_a=4, d_v=3, mu_a=1.2, mu_v=0.8, q_a=0.2, q_v=0.4, rho_v=0.7, distractors=0.4,
                       second_event=0.3, seed=2)
    lat = sample_latents(cfg, 3, seed=9)
    a, v, _ = render_features(cfg, lat, seed=9)
    for which in ('av', 'v'):
        P = posterior(cfg, a, v, which)
        np.testing.assert_allclose(P.sum(-1), 1, atol=1e-9)
        for i in range(3): np.testing.assert_allclose(mc_posterior(cfg, a[i], v[i], which=which), P[i], atol=0.03)


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.integers(-20, 30), st.floats(-2, 12, allow_nan=False), st.booleans()))
def test_lag_out_of_range_is_one_line_naming_it(lag):
    cfg = LatentConfig(lag_v=lag)
    if isinstance(lag, int) and not isinstance(lag, bool) and 0 <= lag <= 9: cfg.check(); return
    with pytest.raises(AVBTError) as e: cfg.check()
    assert '\n' not in str(e.value) and str(e.value).startswith('lag_v = ') and 'allowed 0..9' in str(e.value)


@pytest.mark.parametrize('lag', [1, 2])
def test_lagged_posterior_matches_simulation(lag):
    """With vision lagging by 1 or 2 s the closed form (source-second terms) agrees with the Monte-Carlo posterior, all
    seconds and windowed, each modality alone and both. Tolerance: 2.5 / sqrt(n_eff), five times the largest standard
    error sqrt(p (1 - p) / n_eff) <= 0.5 / sqrt(n_eff) of a self-normalised estimate with n_eff effective draws (of
    200,000); the closed form without the lag misses by far more (checked: the test can fail)."""
    cfg = LatentConfig(classes=3, d_a=4, d_v=3, mu_a=0.9, mu_v=0.8, q_a=0.2, q_v=0.4, rho_v=0.7, distractors=0.4,
                       second_event=0.3, seed=2, lag_v=lag)
    unlagged = LatentConfig(**(asdict(cfg) | dict(lag_v=0)))
    a, v, _ = render_features(cfg, sample_latents(cfg, 2, seed=9), seed=9)
    worst = 0
    for which, window in (('av', None), ('v', None), ('a', None), ('av', 1), ('av', 0)):
        P = posterior(cfg, a, v, which, window)
        np.testing.assert_allclose(P.sum(-1), 1, atol=1e-9)
        for i in range(2):
            mc, n_eff = mc_posterior(cfg, a[i], v[i], which=which, window=window, ess=True)
            assert n_eff > 500                             # (here 900-94,000)
            np.testing.assert_allclose(mc, P[i], atol=2.5 / np.sqrt(n_eff))
            worst = max(worst, np.abs(mc - posterior(unlagged, a, v, which, window)[i]).max() * np.sqrt(n_eff) / 2.5)
    assert worst > 2                                       # ignoring the lag is caught at this sample size


@settings(max_examples=100, deadline=None)
@given(st.floats(-1, 2, allow_nan=False), st.sampled_from([{}, {'distractors': 0.2}, {'second_event': 0.5}]))
def test_rho_noise_out_of_range_is_one_line_naming_it(rho, other):
    cfg = LatentConfig(rho_noise=rho, **other)
    if 0 <= rho <= 0.9 and (rho == 0 or not other): cfg.check(); return
    with pytest.raises(AVBTError) as e: cfg.check()
    assert '\n' not in str(e.value) and str(e.value).startswith('rho_noise = ') and 'allowed 0' in str(e.value)


def _agrees_with_mc(cfg, knob, cases):
    """The closed form against `mc_posterior` on two clips for each (modalities, window) in `cases`, tolerance
    2.5 / sqrt(n_eff); the same posterior with `knob` set to 0 misses by more than twice that (the check can fail)."""
    off = LatentConfig(**(asdict(cfg) | {knob: 0.0}))
    a, v, _ = render_features(cfg, sample_latents(cfg, 2, seed=9), seed=9)
    worst = 0
    for which, window in cases:
        P = posterior(cfg, a, v, which, window)
        np.testing.assert_allclose(P.sum(-1), 1, atol=1e-9)
        for i in range(2):
            mc, n_eff = mc_posterior(cfg, a[i], v[i], which=which, window=window, ess=True)
            assert n_eff > 500
            np.testing.assert_allclose(mc, P[i], atol=2.5 / np.sqrt(n_eff))
            worst = max(worst, np.abs(mc - posterior(off, a, v, which, window)[i]).max() * np.sqrt(n_eff) / 2.5)
    assert worst > 2


@pytest.mark.parametrize('lag', [0, 1])
def test_ar1_posterior_matches_simulation(lag):
    """AR(1) noise over seconds (rho 0.6): the forward-backward closed form agrees with a Monte-Carlo posterior that
    weights each draw by the Gaussian likelihood of the whitened features (Cholesky factor of rho^|i - j|), all seconds
    and windowed; tolerance 2.5 / sqrt(n_eff) as above. Treating the noise as white misses by far more."""
    cfg = LatentConfig(classes=3, d_a=4, d_v=3, mu_a=0.7, mu_v=0.6, q_a=0.2, q_v=0.4, rho_v=0.7, rho_noise=0.6,
                       lag_v=lag, seed=2)
    _agrees_with_mc(cfg, 'rho_noise', (('av', None), ('v', None), ('av', 1)))


def test_ar1_optimum_agrees_with_scoring_on_the_labels():
    "AR(1) at rho = 0.6 keeps the optimum a bound: the Bayes rule scored on the drawn labels agrees with its mean."
    cfg = LatentConfig(classes=6, d_a=8, d_v=8, mu_a=1.5, mu_v=1.2, rho_noise=0.6, lag_v=1, seed=4)
    lat = sample_latents(cfg, 1500, seed=4)
    a, v, _ = render_features(cfg, lat, seed=4)
    exp, _ = bayes_accuracy(cfg, a, v, 'av')
    got, se = bayes_accuracy(cfg, a, v, 'av', labels=lat['labels'])
    assert abs(exp - got) < 3 * se


# bayes_accuracy (a, v, av) x window (None, 0, 2) of 200 clips, computed by the code before the lag existed (2fb407c)
LAG0_PINS = {
    ("temporal-pos", 3): [69.5030088465, 41.3852524661, 65.6886806559, 70.1970436247, 41.5901627851, 66.8949008328,
                          83.5605447643, 58.8489285524, 81.5213371541],
    ("classes5", 1): [56.0617366519, 34.5044584077, 50.2205856155, 67.6693561936, 37.0618651301, 58.3609887989,
                      77.7415250929, 46.416412447, 70.9596514414],
    ("ave-balance", 5): [94.6625928443, 63.8328691909, 93.5325845329, 94.6677839099, 60.6394347933, 92.8856371428,
                         98.362397804, 86.3573788644, 97.840651448],
}


@pytest.mark.parametrize('name,seed', list(LAG0_PINS))
def test_lag_zero_reproduces_the_numbers_before_the_lag(name, seed):
    "lag_v = 0 (the default) gives the same optima as before (to 1e-9 points: the same arithmetic, same draws)."
    cfg = (LatentConfig(classes=5, rho_a=0.5, distractors=0.2, second_event=0.3, seed=1) if name == 'classes5'
           else preset(name, seed=5) if name == 'ave-balance' else preset(name))
    cfg = LatentConfig(**(asdict(cfg) | dict(shared_codes=False)))      # the pins' visual draws: codes not shared
    assert cfg.lag_v == 0
    lat = sample_latents(cfg, 200, seed=seed)
    a, v, _ = render_features(cfg, lat, seed=seed)
    got = [bayes_accuracy(cfg, a, v, w, win)[0] for w in ('a', 'v', 'av') for win in (None, 0, 2)]
    np.testing.assert_allclose(got, LAG0_PINS[(name, seed)], rtol=0, atol=1e-9)


def test_optimum_is_an_upper_bound_of_the_true_labels_and_floors():
    "The Bayes rule scored on the drawn labels agrees with its expected accuracy; both sit above every constant."
    cfg = preset('temporal-pos')
    lat = sample_latents(cfg, 1500, seed=4)
    a, v, _ = render_features(cfg, lat, seed=4)
    exp, se = bayes_accuracy(cfg, a, v, 'av')
    got, se2 = bayes_accuracy(cfg, a, v, 'av', labels=lat['labels'])
    assert abs(exp - got) < 3 * se2
    best_constant = 100 * np.bincount(lat['labels'].ravel()).max() / lat['labels'].size
    windowed = [bayes_accuracy(cfg, a, v, 'av', w)[0] for w in (0, 2)]
    assert best_constant < windowed[0] < windowed[1] <= exp + 1e-9


def test_temporal_negative_has_exchangeable_seconds():
    "temporal-neg: every second is the event, so each second's exact posterior is the same and more seconds tell more."
    cfg = preset('temporal-neg')
    lat = sample_latents(cfg, 300, seed=2)
    y = lat['labels']
    assert (y < cfg.classes).all() and (y == y[:, :1]).all()
    a, v, _ = render_features(cfg, lat, seed=2)
    P = posterior(cfg, a, v, 'av')
    np.testing.assert_allclose(P, np.broadcast_to(P[:, :1], P.shape), atol=1e-12)
    curve = [bayes_accuracy(cfg, a, v, 'av', w)[0] for w in (0, 2, 4, 9)]
    assert all(lo + 3 < hi for lo, hi in zip(curve, curve[1:]))     # every window step adds evidence
    small = preset('temporal-neg', classes=3, d_a=4, d_v=4, mu_a=0.4, mu_v=0.3)  # the given-spans path, simulated
    a, v, _ = render_features(small, sample_latents(small, 2, seed=5), seed=5)
    P = posterior(small, a, v, 'av')
    for i in range(2): np.testing.assert_allclose(mc_posterior(small, a[i], v[i]), P[i], atol=0.03)


def test_ave_balance_hits_table2_on_fresh_clips():
    "Table 2's probes see one segment: the same-second (w = 0) optima are 63.5 and 61.0; more seconds tell more."
    cfg = preset('ave-balance', seed=5)
    lat = sample_latents(cfg, 2000)
    a, v, _ = render_features(cfg, lat)
    one = {w: bayes_accuracy(cfg, a, v, w, 0)[0] for w in ('a', 'v')}
    assert abs(one['a'] - 63.5) < 1.5 and abs(one['v'] - 61.0) < 1.5
    av_one = bayes_accuracy(cfg, a[:500], v[:500], 'av', 0)[0]
    assert av_one > max(one.values()) + 10                                  # audio-visual clearly above both
    assert bayes_accuracy(cfg, a, v, 'a')[0] > one['a'] + 20               # all 10 s: far above one second


def run(*args):
    return subprocess.run([sys.executable, '-m', 'avbt_tacma.cli', *args], capture_output=True, text=True, timeout=300)


def test_synth_preset_cli(tmp_path):
    r = run('synth', '--preset', 'no-such', '--out', str(tmp_path / 'x'))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and 'does not exist' in r.stderr
    assert not (tmp_path / 'x').exists()
    r = run('synth', '--preset', 'fusion-neg', '--out', str(tmp_path / 'k'), '--videos', '300')
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / 'k' / 'known.json').read_text())
    assert meta['config']['mu_v'] == 0 and meta['clips'] == 300 and sum(meta['split_sizes'].values()) == 300
    k = meta['known']
    assert abs(k['audio'] - k['audio_visual']) < 1e-9 and k['visual'] < k['audio']    # vision adds nothing
    from avbt_tacma.features import load_features
    fs = load_features(tmp_path / 'k')
    assert fs.audio.shape == (300, 10, PRESETS['fusion-neg']['d_a']) and fs.meta['known'] == k


def test_known_answer_features_are_not_the_ave(tmp_path):
    "A run on a preset's features (`avbt reproduce --features`) is labelled as known-answer data, not as the AVE."
    from avbt_tacma.known import write_known
    from avbt_tacma.sources import is_real_ave, source_label, known_answer
    write_known(tmp_path / 'k', 'fusion-pos', clips=100, windows=(0,))
    f = tmp_path / 'k' / 'features.h5'
    assert not is_real_ave('features', f) and known_answer(f)['preset'] == 'fusion-pos'
    assert source_label('features', f, 'default') == 'known-answer features, preset fusion-pos (features.h5)'
    (tmp_path / 'other').mkdir()
    assert is_real_ave('features', tmp_path / 'other') and known_answer(tmp_path / 'other') is None


def test_controls_train_the_named_heads_at_their_own_lr(tmp_path):
    "A control trains the heads named in the scale's controls['lrs'] at that lr, the others at the scale's lr."
    from avbt_tacma.store import Repro
    from avbt_tacma.scales import SCALES
    from avbt_tacma.known import write_known
    write_known(tmp_path / 'd', 'fusion-neg', clips=100, windows=(0,))
    R = Repro('controls', tmp_path / 'run', 'smoke', 'features', data=tmp_path / 'd' / 'features.h5')
    R.control('temporal-neg', ['cma', 'probe_a'])
    S = SCALES['smoke']
    runs = sorted((tmp_path / 'run' / 'models' / 'heads').rglob('*_seed0.json'))
    cfg = {p.parent.name.split('-')[0]: json.loads(p.read_text())['config'] for p in runs}
    assert sorted(cfg) == ['cma', 'probe_a'] and S['controls']['lrs']['cma'] != S['head_lr']
    assert cfg['cma']['lr'] == S['controls']['lrs']['cma'] and cfg['probe_a']['lr'] == S['head_lr']
    assert cfg['cma']['epochs'] == cfg['probe_a']['epochs'] == S['controls']['epochs']


@settings(max_examples=100, deadline=None)
@given(st.floats(-1, 5, allow_nan=False),
       st.sampled_from([{}, {'distractors': 0.2}, {'second_event': 0.5}, {'rho_noise': 0.3}, {'lag_v': 2}]))
def test_nuisance_out_of_range_is_one_line_naming_it(sigma, other):
    "nuisance: 0..3, and 0 with distractors, a second event or AR(1) noise (the counts need one code); a lag is fine."
    cfg = LatentConfig(nuisance=sigma, **other)
    if 0 <= sigma <= 3 and (sigma == 0 or other in ({}, {'lag_v': 2})): cfg.check(); return
    with pytest.raises(AVBTError) as e: cfg.check()
    assert '\n' not in str(e.value) and str(e.value).startswith('nuisance = ') and 'allowed 0' in str(e.value)


def test_nuisance_zero_keeps_the_arrays_and_the_counts_give_the_closed_form():
    """sigma = 0 draws nothing more: the arrays of before the knob (pinned then); and the count programme at sigma = 0
    is the closed form to 1e-9 (lag 0 and 2, all seconds and windowed, each modality)."""
    from avbt_tacma.latent import _posterior_count
    pin = LatentConfig(classes=4, d_a=6, d_v=5, q_a=0.3, q_v=0.2, lag_v=1, seed=3)
    a, v, _ = render_features(pin, sample_latents(pin, 3, seed=4), seed=4)
    np.testing.assert_allclose(a[0, 0, :3], [-2.6246073, 1.2769800, -0.4826666], atol=1e-6)
    np.testing.assert_allclose(v[2, 9, :3], [-1.0912752, 0.4021771, 0.6623528], atol=1e-6)
    assert np.isclose(a.astype(np.float64).sum(), -32.24982010386884, atol=1e-4)
    for lag in (0, 2):
        cfg = LatentConfig(classes=3, d_a=4, d_v=3, mu_a=1.2, mu_v=0.8, q_a=0.2, q_v=0.4, rho_v=0.7, lag_v=lag, seed=2)
        a, v, _ = render_features(cfg, sample_latents(cfg, 20, seed=9), seed=9)
        for which, window in (('av', None), ('v', 1), ('a', 0), ('av', 2)):
            keeps = [np.abs(np.arange(10) - t) <= (9 if window is None else window) for t in range(10)]
            count = np.stack([_posterior_count(cfg, (a, v), which, k)[:, t] for t, k in enumerate(keeps)], 1)
            np.testing.assert_allclose(count, posterior(cfg, a, v, which, window), rtol=0, atol=1e-9)


@pytest.mark.parametrize('lag', [0, 1])
def test_nuisance_posterior_matches_simulation(lag):
    """A per-clip offset (sigma 1): the count programme agrees with a Monte-Carlo posterior that weights each draw by
    the Gaussian likelihood of the seconds used under the covariance I + sigma^2 1 1^T (inverted numerically), all
    seconds and windowed, each modality alone and both; tolerance 2.5 / sqrt(n_eff) (five times the largest standard
    error of a self-normalised estimate with n_eff effective draws of 200,000). Ignoring the nuisance misses by far
    more (the test can fail)."""
    cfg = LatentConfig(classes=3, d_a=4, d_v=3, mu_a=0.9, mu_v=0.8, q_a=0.2, q_v=0.4, rho_v=0.7, nuisance=1.0,
                       lag_v=lag, seed=2)
    _agrees_with_mc(cfg, 'nuisance', (('av', None), ('v', None), ('a', None), ('av', 1), ('av', 0)))


def test_ignoring_the_nuisance_scores_worse_and_the_optimum_stays_a_bound():
    """On nuisance data (sigma 2) the exact rule beats the rule that ignores the offset by far more than the paired
    standard error, scored on the drawn labels; and its scored accuracy agrees with its expected accuracy."""
    cfg = LatentConfig(classes=6, d_a=8, d_v=8, mu_a=1.2, mu_v=1.0, nuisance=2.0, lag_v=1, seed=4)
    white = LatentConfig(**(asdict(cfg) | dict(nuisance=0.0)))
    lat = sample_latents(cfg, 800, seed=4)
    a, v, _ = render_features(cfg, lat, seed=4)
    y, P = lat['labels'], posterior(cfg, a, v)
    d = (P.argmax(-1) == y).mean(1) - (posterior(white, a, v).argmax(-1) == y).mean(1)
    assert d.mean() > 4 * d.std(ddof=1) / np.sqrt(len(d))                     # (here 9.7 points, SE 1.5)
    exp, _ = bayes_accuracy(cfg, a, v)
    got, se = bayes_accuracy(cfg, a, v, labels=y)
    assert abs(exp - got) < 3 * se


def test_a_feature_set_without_the_nuisance_knob_is_still_read(tmp_path):
    "A set written before the knob (no 'nuisance' in its config) is read and reused as it is: its sigma is 0."
    from avbt_tacma.known import write_known
    from avbt_tacma.features import load_features
    from avbt_tacma.core import load_json, save_json
    meta = write_known(tmp_path / 'k', 'fusion-neg', clips=100, windows=(0,))
    old = load_json(tmp_path / 'k' / 'known.json')
    del old['config']['nuisance']
    save_json(old, tmp_path / 'k' / 'known.json')
    again = write_known(tmp_path / 'k', 'fusion-neg', clips=100, windows=(0,))
    assert again == old and again['known'] == meta['known']
    assert LatentConfig(**again['config']).check().nuisance == 0
    assert load_features(tmp_path / 'k').audio.shape == (100, 10, PRESETS['fusion-neg']['d_a'])
