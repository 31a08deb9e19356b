"AVE metadata: the real release reads exactly; malformed input fails clearly."
import numpy as np, h5py, pytest
from avbt_tacma.ave import (CATEGORIES, NUM_CLASSES, BG_INDEX, Record, read_annotations, read_order, label_matrix,
                            segment_labels, split_indices, write_annotations, HEADER)
from avbt_tacma.core import AVBTError

def test_real_annotations(ave_meta):
    recs = read_annotations(ave_meta / 'Annotations.txt')
    assert len(recs) == 4143
    assert list(dict.fromkeys(r.category for r in recs)) == CATEGORIES
    y = label_matrix(recs)
    assert y.shape == (4143, 10, 29) and (y.sum(-1) == 1).all()
    with h5py.File(ave_meta / 'labels_closs.h5') as f: closs = f['avadataset'][()]
    np.testing.assert_array_equal((y.argmax(-1) != BG_INDEX).astype(np.float32), closs)
    with h5py.File(ave_meta / 'mil_labels.h5') as f: mil = f['avadataset'][()]
    # video-level classes: the event category of each clip (the zero-length row still names its category)
    np.testing.assert_array_equal(mil[:, :28].argmax(-1), [r.label for r in recs])
    zero = [i for i, r in enumerate(recs) if r.start == r.end]
    assert zero == [26] and (y[26].argmax(-1) == BG_INDEX).all()
    assert abs((y.argmax(-1) == BG_INDEX).mean() - 0.17) < 0.03   # ~17% background, as documented

def test_real_splits(ave_meta):
    recs = read_annotations(ave_meta / 'Annotations.txt')
    orders = {s: read_order(ave_meta / f'{s}_order.h5') for s in ('train', 'val', 'test')}
    assert [len(o) for o in orders.values()] == [3339, 402, 402]
    assert sorted(np.concatenate(list(orders.values()))) == list(range(4143))
    for s, o in orders.items():   # the split text files list the same rows as the order files
        split = read_annotations(ave_meta / f'{s}Set_RECONSTRUCTED_from_{s}_order.txt')
        np.testing.assert_array_equal(split_indices(recs, split), o)

def test_header_optional(tmp_path):
    body = 'Church bell&a&good&0&10\nBark&b&bad&2&7\n'
    (tmp_path / 'h.txt').write_text(HEADER + '\n' + body); (tmp_path / 'n.txt').write_text(body)
    assert read_annotations(tmp_path / 'h.txt') == read_annotations(tmp_path / 'n.txt')
    assert segment_labels(read_annotations(tmp_path / 'n.txt'))[1].tolist() == [28, 28, 2, 2, 2, 2, 2, 28, 28, 28]

@pytest.mark.parametrize('line,msg', [
    ('Bark&b&good&2', 'expected 5'), ('Bark&b&good&x&7', 'whole seconds'), ('Bark&b&good&8&3', 'start <= end'),
    ('Bark&b&good&0&11', 'start <= end'), ('&b&good&0&1', 'empty category')])
def test_malformed_line_names_file_and_line(tmp_path, line, msg):
    p = tmp_path / 'Annotations.txt'
    p.write_text('Church bell&a&good&0&10\n' + line + '\n')
    with pytest.raises(AVBTError, match=rf'Annotations.txt:2: .*{msg}'): read_annotations(p)

def test_unknown_category_and_missing_file(tmp_path):
    with pytest.raises(AVBTError, match='unknown category'): label_matrix([Record('Kazoo', 'v', 'good', 0, 1)])
    with pytest.raises(AVBTError, match='not found'): read_annotations(tmp_path / 'nope.txt')
    with pytest.raises(AVBTError, match='not found'): read_order(tmp_path / 'nope.h5')

def test_roundtrip(tmp_path):
    recs = [Record(c, f'v{i}', 'good', i % 10, 10) for i, c in enumerate(CATEGORIES)]
    write_annotations(recs, tmp_path / 'A.txt')
    assert read_annotations(tmp_path / 'A.txt') == recs
    assert NUM_CLASSES == 29
