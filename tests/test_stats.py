"stats: Holm against statsmodels, the bootstrap against scipy.stats.bootstrap, TOST by hand and against statsmodels."
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from hypothesis.extra.numpy import arrays
from avbt_tacma.stats import (holm, boot_means, percentile_interval, boot_p, tost_p, verdict, judge, replicate_array,
                              adjusted_verdict, mde, EQUIV_MARGIN, LEVELS)

pvals = st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=15)

@settings(deadline=None)
@given(pvals)
def test_holm_matches_statsmodels(p):
    multipletests = pytest.importorskip('statsmodels.stats.multitest').multipletests
    np.testing.assert_allclose(holm(p), multipletests(p, method='holm')[1], atol=1e-12)

@given(pvals)
def test_holm_never_lowers_a_p_value_and_keeps_their_order(p):
    adj, p = holm(p), np.asarray(p)
    assert (adj >= p - 1e-12).all() and (adj <= 1).all()
    o = np.argsort(p, kind='stable')
    assert (np.diff(adj[o]) >= -1e-12).all()

def test_one_level_bootstrap_matches_scipy():
    "One AV-BT seed, one head seed: the bootstrap over clips is the ordinary one; scipy's interval within MC error."
    from scipy import stats
    d = np.random.default_rng(5).normal(1.0, 4.0, 80)
    ours = percentile_interval(boot_means([d[None, None]], n_boot=20000, seed=1)[0])
    ref = stats.bootstrap((d,), np.mean, n_resamples=20000, method='percentile', random_state=2).confidence_interval
    se = d.std(ddof=1) / np.sqrt(len(d))
    assert ours == pytest.approx((ref.low, ref.high), abs=0.08 * se)

def test_bootstrap_spread_follows_the_seed_levels():
    "Clip values equal within a seed: the only spread left is between AV-BT seeds (sd of the mean of 4 seeds)."
    seeds = np.array([60., 62, 64, 66])
    x = np.broadcast_to(seeds[:, None, None], (4, 3, 20))
    bm = boot_means([x], n_boot=20000)[0]
    assert bm.std() == pytest.approx(seeds.std() / 2, rel=0.05)          # sqrt(1/4) of the population sd

def test_tost_hand_worked():
    "Resamples 0.0, 0.1, ..., 1.9 against the range (0.3, 1.8): 4 at or below 0.3, 2 at or above 1.8: p = 5/21."
    b = np.round(np.arange(20) / 10, 1)
    assert tost_p(b, 0.3, 1.8) == pytest.approx(5 / 21)
    assert tost_p(b, -1, 3) == pytest.approx(1 / 21)                    # all inside: the +1 correction only

def test_tost_agrees_with_statsmodels_on_a_large_sample():
    "The bootstrap TOST of a mean difference is statsmodels' paired t TOST for a large sample (normal theory)."
    ttost_paired = pytest.importorskip('statsmodels.stats.weightstats').ttost_paired
    rng = np.random.default_rng(3)
    a = rng.normal(70, 5, 400); b = a - 1.0 + rng.normal(0, 3, 400)
    boot = boot_means([a[None, None], b[None, None]], n_boot=20000, seed=4)
    ours = tost_p(boot[0] - boot[1], 0.5, 2.5)
    ref = ttost_paired(a, b, 0.5, 2.5)[0]
    assert ours == pytest.approx(ref, abs=0.02)

def test_paper_effect_inside_or_within_margin():
    rng = np.random.default_rng(0)
    b = rng.normal(60, 2, (3, 4, 40)); a = b + 4 + rng.normal(0, 0.5, b.shape)
    assert judge([a], [b], paper=4.0)['verdict'] == 'reproduced'
    assert judge([a], [b], paper=4.0 + 1.5 * EQUIV_MARGIN)['verdict'] == 'direction only'
    assert judge([b], [a], paper=4.0)['verdict'] == 'not reproduced'
    assert judge([a], [b], paper=4.0)['levels'] == list(LEVELS)

rows = arrays(float, st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 12)),
              elements=st.floats(0, 100, allow_nan=False, allow_infinity=False))

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows, st.floats(-20, 20), st.integers(0, 10 ** 6))
def test_interval_holds_the_estimate(a, shift, seed):
    b = a - shift
    r = judge([a], [b], n_boot=400, seed=seed)
    assert r['effect'] == pytest.approx(shift, abs=1e-6)
    if not r['levels']:                                   # one value a side: no interval, no verdict
        assert r['lo'] is None and r['verdict'] == 'inconclusive'
        return
    assert r['lo'] - 1e-6 <= r['effect'] <= r['hi'] + 1e-6 and r['mde'] >= 0

rank = {'not reproduced': 0, 'inconclusive': 1, 'direction only': 2, 'reproduced': 2}

@given(st.floats(-50, 50), st.floats(0, 30), st.floats(0, 30), st.one_of(st.none(), st.floats(0.1, 30)))
def test_verdict_is_monotone_in_the_effect(lo, width, up, paper):
    "Moving the interval up never moves the verdict down (not reproduced < inconclusive < the sign holds)."
    v0, v1 = verdict(lo, lo + width, paper), verdict(lo + up, lo + up + width, paper)
    assert rank[v1] >= rank[v0]
    assert (v0 == 'not reproduced') == (lo + width < 0)

@given(st.sampled_from(['reproduced', 'direction only', 'not reproduced', 'inconclusive']), st.floats(0, 1))
def test_adjusting_only_weakens(raw, p):
    adj = adjusted_verdict(raw, p)
    assert adj in (raw, 'inconclusive') and (adj == raw or p >= 0.05)

def test_bad_input_is_one_clear_error():
    from avbt_tacma.core import AVBTError
    with pytest.raises(AVBTError, match='same test clips'): boot_means([np.zeros((1, 2, 3)), np.zeros((1, 2, 4))])
    with pytest.raises(AVBTError, match='finite'): replicate_array([1.0, float('nan')])
    with pytest.raises(AVBTError, match='kind'): judge([np.zeros(3)], [np.zeros(3)], kind='best')
