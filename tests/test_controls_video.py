"Video-level controls (step controls-video): its plumbing at a tiny size, the report's line when it did not run."
import csv, json
import pytest
from avbt_tacma.report import (VIDEO_CONTROLS, VIDEO_NOT_RUN, CONTROLS, control_table, controls_table, write_table,
                               result_row, majority_row, write_summary)
from avbt_tacma.steps import STEPS, run_notebook, paper_notebooks
from avbt_tacma.scales import SCALES, VIDEO_CONTROL_SCALES


def test_only_quick_runs_the_video_controls_by_default():
    step = next(s for s in STEPS if s.name == 'controls-video')
    assert step.scales == VIDEO_CONTROL_SCALES == ('quick',) and 'controls_video' in SCALES['quick']
    assert [CONTROLS[k] for k in VIDEO_CONTROLS] == [('aug-hue-pos', 'aug-shape-neg')]


def _fusion_controls(out):
    "Head-level control tables of the fusion claim only (what a scale's `controls` step leaves)."
    for preset, (av, a) in (('fusion-pos', (60, 50)), ('fusion-neg', (50, 50.5))):
        rows = [majority_row(20.0), result_row('av', None, [av + x for x in (0, 1, -0.5, 0.4, 0.2)], key='probe_av'),
                result_row('a', None, [a + x for x in (0, 1, -0.5, 0.4, 0.2)], key='probe_a')]
        write_table(out, control_table(preset), rows, preset, 'known', 'default', step='controls')


def test_report_says_the_video_controls_did_not_run(tmp_path):
    _fusion_controls(tmp_path)
    ctl, md = controls_table(tmp_path)
    assert not ctl['jitter_damages']['ran'] and ctl['av_over_a']['ran']
    row = next(line for line in md.splitlines() if 'colour jitter' in line)
    assert row.rstrip(' |').endswith(VIDEO_NOT_RUN) and VIDEO_NOT_RUN.endswith('avbt reproduce --only controls-video')
    with open(tmp_path / 'tables' / 'controls.csv', encoding='utf-8') as fh:
        st = {r['claim']: r['status'] for r in csv.DictReader(fh)}
    assert st['jitter_damages'] == VIDEO_NOT_RUN and st['av_over_a'] != VIDEO_NOT_RUN


@pytest.mark.slow
def test_controls_video_step_at_a_tiny_size(tmp_path):
    "The step's notebook at smoke size (40 clips per preset, 1 AV-BT epoch): both control tables with r6 / r5 rows, "
    "and the report judges the colour-jitter claim on them instead of saying 'not run'."
    out = tmp_path / 'run'
    run_notebook(paper_notebooks() / 'controls_video.ipynb', out / 'notebooks' / 'controls_video.ipynb',
                 dict(scale='smoke', out=str(out), run=dict(device='cpu'), videos=40, epochs=1))
    for preset in CONTROLS['jitter_damages']:
        t = json.loads((out / 'tables' / f'{control_table(preset)}.json').read_text())
        keys = [r.get('key') for r in t['rows']]
        assert keys[:2] == ['r6', 'r5'], keys
        assert all(len(r['values']) == 2 for r in t['rows'][:2])                    # 1 AV-BT seed x 2 probe seeds
        assert all(0 <= v <= 100 for r in t['rows'][:2] for v in r['values'])
    assert len(list((out / 'known').glob('aug-*-video-40c-*/AVE/*.mp4'))) == 80
    _fusion_controls(out)
    ctl, md = controls_table(out)
    assert ctl['jitter_damages']['ran'] and VIDEO_NOT_RUN not in md
    assert ctl['jitter_damages']['positive']['verdict'] != 'not run'
