"claims.json: every verdict recomputed from the run folder with numpy and scipy alone (no avbt_tacma statistics)."
import json
import numpy as np
import pytest
from scipy.stats import norm
from avbt_tacma.report import write_table, result_row, majority_row, clip_data, claims_table

def _run_folder(d, rng):
    "Tables 2, 3 and 5 with per-clip test data: 2 AV-BT seeds x 3 head seeds, 50 test clips, background class 5."
    y = rng.integers(0, 5, (50, 10)); y[:, 7:] = 5
    def row(label, key, right, seed):
        r = np.random.default_rng(seed)
        ps = [np.where(r.random(y.shape) < right, y, (y + 1 + r.integers(0, 4, y.shape)) % 6) for _ in range(6)]
        t = clip_data(y, [(a, h, ps[3 * a + h]) for a in range(2) for h in range(3)], background=5)
        return result_row(label, None, [100 * (p == y).mean() for p in ps], key=key, test=t)
    write_table(d, 'table2', [majority_row(30.0), row('av', 'probe_av', 0.72, 1), row('a', 'probe_a', 0.62, 2),
                              row('v', 'probe_v', 0.61, 3), row('untrained', 'control_untrained', 0.5, 4)],
                'Table 2', 'synthetic', 'default', step='table2')
    write_table(d, 'table3', [row('tacma', 'tacma', 0.73, 5), row('cma', 'cma', 0.72, 6), row('psp', 'psp', 0.70, 7)],
                'Table 3', 'synthetic', 'default', step='table3')
    write_table(d, 'table5', [row(f'r{i}', f'r{i}', 0.6 + (0.08 if i == 6 else 0.01 * (i % 3)), 10 + i)
                              for i in range(1, 11)], 'Table 5', 'synthetic', 'default', step='table5')

def _recompute(c):
    "The claim's interval, p and verdict from its stored values, following claims.json's procedure with numpy alone."
    pr = c['procedure']
    B, alpha, margin = pr['n_boot'], pr['alpha'], pr['equivalence_margin']
    rows = [np.asarray(r['values'], float) for r in c['rows']]
    side_a = [i for i, r in enumerate(c['rows']) if r['side'] == 'a']
    rng = np.random.default_rng(pr['seed'])
    C = rows[0].shape[2]
    clips = rng.integers(0, C, (B, C))
    shapes = list(dict.fromkeys(r.shape[:2] for r in rows)) if pr['paired'] else [r.shape[:2] for r in rows]
    draws = [(rng.integers(0, A, (B, A)), rng.integers(0, H, (B, A, H))) for A, H in shapes]
    group = [shapes.index(r.shape[:2]) if pr['paired'] else i for i, r in enumerate(rows)]
    means = np.zeros((len(rows), B))
    for i, x in enumerate(rows):
        a_idx, h_idx = draws[group[i]]
        for b in range(B):                                   # plain loops: seeds drawn, head seeds within, clips
            vals = [x[a, h][clips[b]].mean() for k, a in enumerate(a_idx[b]) for h in h_idx[b, k]]
            means[i, b] = np.mean(vals)
    est = np.array([x.mean() for x in rows])
    other = [i for i in range(len(rows)) if i not in side_a]
    if pr['kind'] == 'each':
        diffs = means[side_a[0]] - means[other]
        boot, effect = diffs.min(0), (est[side_a[0]] - est[other]).min()
        diffs = np.round(diffs, 9)
        p = max(min(1, 2 * (min((d <= 0).sum(), (d >= 0).sum()) + 1) / (B + 1)) for d in diffs)
    else:
        boot = means[side_a].mean(0) - means[other].mean(0)
        effect = est[side_a].mean() - est[other].mean()
        r9 = np.round(boot, 9)                               # as stats.boot_p: summation-order noise is 0
        p = min(1, 2 * (min((r9 <= 0).sum(), (r9 >= 0).sum()) + 1) / (B + 1))
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    paper = c['paper']
    if hi < 0: v = 'not reproduced'
    elif lo <= 0: v = 'inconclusive'
    elif paper is None or lo <= paper <= hi: v = 'reproduced'
    else:
        r9 = np.round(boot, 9)
        tost = (max((r9 <= paper - margin).sum(), (r9 >= paper + margin).sum()) + 1) / (B + 1)
        v = 'reproduced' if tost < alpha else 'direction only'
    mde = (norm.ppf(1 - alpha / 2) + norm.ppf(pr['power'])) * boot.std(ddof=1)
    return dict(effect=effect, lo=lo, hi=hi, p=p, verdict=v, mde=mde)

def test_claims_json_recomputes_with_numpy_alone(tmp_path):
    _run_folder(tmp_path, np.random.default_rng(0))
    res, md = claims_table(tmp_path, n_boot=300)
    saved = json.loads((tmp_path / 'tables' / 'claims.json').read_text())['claims']
    assert [c['key'] for c in saved] == [r['key'] for r in res]
    judged = [c for c in saved if c['rows']]
    assert {'av_over_a', 'crop_blur_best', 'fewer_event_to_bg', 'tacma_over_cma'} <= {c['key'] for c in judged}
    for c in judged:
        r = _recompute(c)
        for k in ('effect', 'lo', 'hi', 'p', 'mde'): assert r[k] == pytest.approx(c[k], abs=1e-9), (c['key'], k)
        assert r['verdict'] == c['verdict'] or not c['judged'], c['key']
        assert f"{c['effect']:+.1f} [{c['lo']:+.1f}, {c['hi']:+.1f}]" in md             # the printed interval
    fam = [c for c in saved if c['judged'] and c['primary']]             # Holm by hand: sorted, times m, m-1, ...
    p = np.array([c['p'] for c in fam]); o = np.argsort(p, kind='stable')
    adj = np.maximum.accumulate(np.minimum(1, (len(p) - np.arange(len(p))) * p[o]))
    assert np.allclose([fam[i]['p_adjusted'] for i in o], adj)
    assert all(c['verdict_adjusted'] == (c['verdict'] if c['p_adjusted'] < 0.05 else 'inconclusive') for c in fam
               if c['verdict'] != 'inconclusive')
