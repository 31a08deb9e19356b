"`avbt synth --like`: a synthetic twin of a real annotation file keeps its rows, splits and the AVE's media shape."

import subprocess, sys
from fractions import Fraction
import av
import pytest
from avbt_tacma.ave import Record, read_annotations, write_annotations, CATEGORIES
from avbt_tacma.core import load_json, AVBTError
from avbt_tacma.synth import make_synthetic_like, like_fps, sample_rows


def avbt(*args):
    return subprocess.run([sys.executable, '-m', 'avbt_tacma.cli', *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope='module')
def hand(tmp_path_factory):
    "A hand-written Annotations.txt with split lists: a shared id (two rows), a zero-length event, 4 classes."
    d = tmp_path_factory.mktemp('real')
    rows = [
        Record('Church bell', 'AAAAAAAAAAA', 'good', 0, 10),
        Record('Male speech, man speaking', 'BBBBBBBBBBB', 'good', 2, 7),
        Record('Female speech, woman speaking', 'BBBBBBBBBBB', 'good', 0, 0),
        Record('Bark', 'CCCCCCCCCCC', 'good', 4, 6),
        Record('Bark', 'DDDDDDDDDDD', 'good', 1, 9),
        Record('Cat', 'EEEEEEEEEEE', 'good', 3, 10),
    ]
    write_annotations(rows, d / 'Annotations.txt', header=False)
    for s, idx in (('train', [0, 1, 3]), ('val', [2, 5]), ('test', [4])):
        write_annotations([rows[i] for i in idx], d / f'{s}Set.txt', header=False)
    return d, rows


def test_twin_of_a_hand_written_file(hand, tmp_path):
    d, rows = hand
    r = avbt(
        'synth', '--like', d / 'Annotations.txt', '--out', tmp_path / 'twin', '--frame-size', '64x48', '--workers', '1'
    )
    assert r.returncode == 0, r.stderr
    assert 'splits from split lists' in r.stdout
    twin = tmp_path / 'twin'
    assert read_annotations(twin / 'Annotations.txt') == rows
    assert read_annotations(twin / 'valSet.txt') == [rows[2], rows[5]] and read_annotations(twin / 'testSet.txt') == [
        rows[4]
    ]
    assert sorted(p.stem for p in (twin / 'AVE').glob('*.mp4')) == [
        'AAAAAAAAAAA',
        'BBBBBBBBBBB',
        'CCCCCCCCCCC',
        'DDDDDDDDDDD',
        'EEEEEEEEEEE',
    ]
    meta = load_json(twin / 'synth_meta.json')
    for v, rec in zip(meta['videos'], rows):  # the rendered plan follows the real row: class and span
        assert (v['category'], v['start'], v['end']) == (rec.category, rec.start, rec.end)
        assert v['event'] == [int(rec.start <= t < rec.end) for t in range(10)]
    assert meta['videos'][2]['media_from_row'] == 1  # the shared id has one file, from its first row
    with av.open(str(twin / 'AVE' / 'CCCCCCCCCCC.mp4')) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.name, a.codec_context.name) == ('h264', 'aac')
        assert (v.codec_context.width, v.codec_context.height, a.rate, a.channels) == (64, 48, 44100, 2)
        assert v.average_rate == like_fps('CCCCCCCCCCC') and abs(c.duration / 1e6 - 10) < 0.1
    # the set resumes as it is, and it is not overwritten by other settings or by mistake
    r = avbt('synth', '--like', d / 'Annotations.txt', '--out', twin, '--frame-size', '64x48', '--videos', '3')
    assert r.returncode != 0 and 'other settings' in r.stderr
    r = avbt('synth', '--like', d / 'Annotations.txt', '--out', twin, '--fps', '30')
    assert r.returncode != 0 and '--fps' in r.stderr and 'Traceback' not in r.stderr


def test_sampling_spreads_over_splits_and_classes():
    cats = [c for c in CATEGORIES for _ in range(12)]
    splits = (['train'] * 10 + ['val', 'test']) * 28
    rows = sample_rows(cats, splits, 84, seed=1)
    assert len(set(rows)) == 84 and {cats[r] for r in rows} == set(CATEGORIES)
    assert [sum(splits[r] == s for r in rows) for s in ('train', 'val', 'test')] == [70, 7, 7]
    assert sample_rows(cats, splits, 5, 0) == sample_rows(cats, splits, 5, 0)
    assert {like_fps(f'id{i}') for i in range(100)} == {Fraction(25), Fraction(30), Fraction(30000, 1001)}


def test_bad_input(tmp_path):
    (tmp_path / 'A.txt').write_text('Nope&XXXXXXXXXXX&good&0&10\n')
    with pytest.raises(AVBTError, match='unknown category'):
        make_synthetic_like(tmp_path / 'A.txt', tmp_path / 'o', progress=False)
    r = avbt('synth', '--like', tmp_path / 'missing.txt', '--out', tmp_path / 'o')
    assert r.returncode != 0 and 'not found' in r.stderr and 'Traceback' not in r.stderr


def test_real_file_rows_and_splits(ave_meta):
    "Which 84 rows of the real file a twin takes (no rendering): all 28 classes, in the real splits' proportions."
    from avbt_tacma.synth import like_splits

    real = read_annotations(ave_meta / 'Annotations.txt')
    splits, src = like_splits(ave_meta / 'Annotations.txt', real)
    assert src == 'order files (*_order.h5)' and [splits.count(s) for s in ('train', 'val', 'test')] == [3339, 402, 402]
    rows = sample_rows([r.category for r in real], splits, 84)
    assert {real[r].category for r in rows} == set(CATEGORIES) and [
        sum(splits[r] == s for r in rows) for s in ('train', 'val', 'test')
    ] == [68, 8, 8]
    assert sorted(sum(real[r].category == c for r in rows) for c in CATEGORIES) == [3] * 28


@pytest.mark.slow
def test_twin_of_the_real_file(ave_meta, tmp_path):
    "`avbt synth --like` of 84 real rows: their ids, categories and spans, all 28 classes, the real splits (~2 min)."
    real = read_annotations(ave_meta / 'Annotations.txt')
    r = avbt(
        'synth',
        '--like',
        ave_meta / 'Annotations.txt',
        '--videos',
        84,
        '--out',
        tmp_path / 'twin',
        '--frame-size',
        '64x48',
    )
    assert r.returncode == 0, r.stderr
    twin = read_annotations(tmp_path / 'twin' / 'Annotations.txt')
    meta = load_json(tmp_path / 'twin' / 'synth_meta.json')
    assert len(twin) == 84 and twin == [real[v['row']] for v in meta['videos']]
    assert {r.category for r in twin} == set(CATEGORIES) and meta['summary'][
        'splits_from'
    ] == 'order files (*_order.h5)'
    from avbt_tacma.ave import read_order

    test_rows = set(read_order(ave_meta / 'test_order.h5').tolist())
    assert [v['split'] == 'test' for v in meta['videos']] == [v['row'] in test_rows for v in meta['videos']]
    assert meta['summary']['split_sizes'] == {'train': 68, 'val': 8, 'test': 8}
    assert len(list((tmp_path / 'twin' / 'AVE').glob('*.mp4'))) == len({r.video_id for r in twin})
