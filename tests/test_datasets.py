"Training datasets: frame choice, Table 5 augmentations, reproducibility across workers, the community feature reader."
import pickle
from dataclasses import asdict
from pathlib import Path
import numpy as np, pytest, torch
from avbt_tacma.core import AVBTError
from avbt_tacma.datasets import (AugConfig, AVClipDataset, MemoryCache, TABLE5_ROWS, SMALLER_CROP_SCALE, BT_CROP_SCALE,
                                 denormalize_frames, make_loader)

META = Path(__file__).resolve().parents[2] / 'shared' / 'ave-meta'


def numbered_cache(n=6, hw=20):
    "Every pixel of frame f equals f, so the frame a dataset picked can be read back from its output."
    frames = np.broadcast_to(np.arange(160, dtype=np.uint8)[None, :, None, None, None], (n, 160, hw, hw, 3)).copy()
    logmel = np.arange(n * 10 * 96 * 64, dtype=np.float32).reshape(n, 10, 96, 64)
    labels = np.tile(np.arange(10), (n, 1)) + np.arange(n)[:, None]
    return MemoryCache(frames, logmel, labels, {'train': [0, 1, 2, 3], 'val': [4], 'test': [5]})


def frame_numbers(item):
    return (denormalize_frames(item['frames'])[:, 0, 0, 0] * 255).round().long().tolist()


def test_eval_item_is_the_middle_frame_and_deterministic():
    c = numbered_cache()
    ds = AVClipDataset(c, 'test', train=False, size=16)
    it = ds[0]
    assert it['row'] == 5 and len(ds) == 1
    assert it['frames'].shape == (10, 3, 16, 16) and it['frames'].dtype == torch.float32
    assert it['logmel'].shape == (10, 1, 96, 64) and torch.equal(it['logmel'][:, 0], torch.from_numpy(c.logmel(5)))
    assert it['labels'].dtype == torch.int64 and it['labels'].tolist() == list(range(5, 15))
    assert frame_numbers(it) == [16 * t + 8 for t in range(10)]
    ds.set_epoch(7)
    assert torch.equal(ds[0]['frames'], it['frames'])                  # the epoch does not matter in evaluation


def test_train_frames_random_per_segment_and_reproducible():
    c = numbered_cache()
    ds = AVClipDataset(c, 'train', train=True, aug=None, size=16, seed=11)
    seen = set()
    for e in range(6):
        ds.set_epoch(e)
        f = frame_numbers(ds[0])
        assert [x // 16 for x in f] == list(range(10))                  # one frame inside each segment
        seen.add(tuple(f))
    assert len(seen) == 6                                              # a new draw each epoch
    ds.set_epoch(2); a = ds[1]['frames']
    again = AVClipDataset(c, 'train', train=True, aug=AugConfig(crop=False, blur=False), size=16, seed=11)
    again.set_epoch(2)
    assert torch.equal(again[1]['frames'], a)


def test_augmented_items_same_with_and_without_workers():
    c = MemoryCache.synthetic(6, hw=40)
    ds = AVClipDataset(c, 'train', train=True, aug=TABLE5_ROWS[1][0], size=24, seed=3)
    def run(workers):
        loader = make_loader(ds, 2, shuffle=True, workers=workers, seed=9)
        out = []
        for e in range(2):
            ds.set_epoch(e)
            out.append([(b['row'].tolist(), b['frames']) for b in loader])
        return out
    single, multi = run(0), run(2)
    for e in range(2):
        for (r0, f0), (r2, f2) in zip(single[e], multi[e]):
            assert r0 == r2 and torch.equal(f0, f2)
    assert not torch.equal(single[0][0][1], single[1][0][1])


def test_switches_do_what_they_say():
    c = MemoryCache.synthetic(2, hw=48)
    def item(**kw):
        return denormalize_frames(AVClipDataset(c, 'train', True, AugConfig(**{'crop': False, 'blur': False, **kw}),
                                                48)[0]['frames'])
    plain = item()
    g = item(grayscale=True, grayscale_p=1.0)
    assert torch.allclose(g[:, 0], g[:, 1], atol=1e-6) and torch.allclose(g[:, 0], g[:, 2], atol=1e-6)
    assert not torch.allclose(plain[:, 0], plain[:, 1], atol=1e-2)
    assert torch.allclose(item(flip=True, flip_p=1.0), plain.flip(-1), atol=1e-6)
    p255 = (plain * 255).round()
    assert torch.allclose(item(solarize=True, solarize_p=1.0) * 255, torch.where(p255 >= 128, 255 - p255, p255),
                          atol=1e-3)
    sharp = lambda x: ((x[..., 1:] - x[..., :-1]) ** 2).mean()
    assert sharp(item(blur=True, blur_sigma=(2.0, 2.0))) < 0.5 * sharp(plain)
    assert (item(jitter=True, jitter_p=1.0) - plain).abs().mean() > 0.01
    assert torch.equal(item(grayscale=True, grayscale_p=0.0), plain)


def test_table5_rows_and_config():
    assert [a for _, a in TABLE5_ROWS] == [74.0, 74.5, 74.2, 74.3, 74.4, 75.6, 74.3, 74.7, 74.5, 74.4]
    pattern = [tuple(int(getattr(c, s)) for s in ('crop', 'flip', 'solarize', 'grayscale', 'jitter', 'blur')) for c,
               _ in TABLE5_ROWS]
    assert pattern == [(1, 1, 1, 1, 1, 1), (1, 1, 1, 1, 1, 1), (1, 0, 1, 1, 1, 1), (1, 0, 0, 1, 1, 1),
                       (1, 0, 0, 0, 1, 1),
                       (1, 0, 0, 0, 0, 1), (1, 0, 0, 0, 0, 0), (1, 1, 0, 0, 0, 1), (1, 1, 1, 1, 0, 1),
                       (0, 0, 0, 0, 0, 0)]
    assert TABLE5_ROWS[0][0].crop_scale == SMALLER_CROP_SCALE
    assert all(c.crop_scale == BT_CROP_SCALE for c, _ in TABLE5_ROWS[1:])
    assert SMALLER_CROP_SCALE[0] > BT_CROP_SCALE[0]                    # the starred row crops away less
    d = AugConfig()
    assert (d.crop, d.blur, d.flip, d.solarize, d.grayscale, d.jitter) == (True, True, False, False, False, False)
    assert (d.jitter_strength, d.jitter_p, d.grayscale_p, d.blur_sigma, d.blur_p,
            d.solarize_p) == ((0.4, 0.4, 0.2, 0.1), 0.8, 0.2, (0.1, 2.0), 1.0, 0.2)
    assert AugConfig.from_dict(asdict(TABLE5_ROWS[0][0])) == TABLE5_ROWS[0][0]
    with pytest.raises(AVBTError, match='crop_scale'): AugConfig(crop_scale=(0, 1))


def test_bad_split_and_pickling():
    c = numbered_cache()
    with pytest.raises(AVBTError, match="no split 'dev'"): AVClipDataset(c, 'dev', train=False)
    ds = AVClipDataset(c, 'train', train=True, size=16, seed=1)
    ds.set_epoch(3)
    ds2 = pickle.loads(pickle.dumps(ds))
    assert ds2.epoch == 3 and torch.equal(ds2[0]['frames'], ds[0]['frames'])


def test_unavailable_clips_are_left_out():
    c = numbered_cache()
    c.available = np.setdiff1d(c.available, [1, 3])
    ds = AVClipDataset(c, 'train', train=False, size=16)
    assert list(ds.rows) == [0, 2]


@pytest.mark.skipif(not (META / 'audio_feature_noisy.h5').exists(), reason='shared AVE metadata not present')
def test_community_feature_layout_on_real_audio_file(tmp_path):
    import h5py
    from avbt_tacma.features import load_features, feature_dataset
    (tmp_path / 'audio_feature.h5').symlink_to(META / 'audio_feature_noisy.h5')
    n = 178
    with h5py.File(tmp_path / 'visual_feature.h5', 'w') as f: f['avadataset'] = np.ones((n, 10, 7, 7, 4))
    with h5py.File(tmp_path / 'labels.h5',
                   'w') as f: f['avadataset'] = np.eye(29)[np.arange(n * 10).reshape(n, 10) % 29]
    for s, o in zip(('train', 'val', 'test'), np.split(np.arange(n), [150, 164])):
        with h5py.File(tmp_path / f'{s}_order.h5', 'w') as f: f['order'] = o
    fs = load_features(tmp_path)
    assert fs.audio.shape == (178, 10, 128) and fs.audio.dtype == np.float32 and fs.visual.shape == (178, 10, 7, 7, 4)
    with h5py.File(META / 'audio_feature_noisy.h5') as f:
        assert np.allclose(fs.audio, f['avadataset'][()], atol=1e-6)
    assert [len(fs.splits[s]) for s in ('train', 'val', 'test')] == [150, 14, 14]
    a, v, y = feature_dataset(fs.pooled(), 'val')[0]
    assert a.shape == (10, 128) and v.shape == (10, 4) and y.tolist() == [(1500 + t) % 29 for t in range(10)]


@pytest.fixture(scope='module')
def prepared(synthetic_cache): return synthetic_cache      # the session's synthetic set (tests/conftest.py)


def test_real_cache_by_path_with_workers(prepared):
    from avbt_tacma.prepare import open_cache
    cache = open_cache(prepared)
    ev = AVClipDataset(prepared, 'train', train=False, size=32)
    assert list(ev.rows) == list(cache.splits['train']) and len(ev) > 0
    row = int(ev.rows[0])
    it = ev[0]
    assert it['row'] == row and torch.equal(it['labels'], torch.from_numpy(cache.labels(row)))
    # the evaluation frames are the middle frames of the cache, resized
    from avbt_tacma.datasets import frame_transform, normalize_frames
    mid = torch.from_numpy(cache.frames(row, np.arange(10) * 16 + 8)).permute(0, 3, 1, 2)
    assert torch.allclose(it['frames'], normalize_frames(frame_transform(None, 32)(mid)))
    tr = AVClipDataset(prepared, 'train', train=True, aug=AugConfig(), size=32, seed=2)
    def frames(workers):
        loader = make_loader(tr, 2, shuffle=True, workers=workers)
        return [torch.cat([b['frames'] for b in loader]) for e in range(2) if tr.set_epoch(e) is None]
    a, b = frames(0), frames(2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], a[1])
