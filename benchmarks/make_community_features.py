#!/usr/bin/env python
"""Write full-size stand-ins for the community's pre-extracted AVE features, in exactly their layout:

    audio_feature.h5   key 'avadataset'  [N, 10, 128]           float64 (VGGish)
    visual_feature.h5  key 'avadataset'  [N, 10, 7, 7, 512]     float64 (VGG-19 pool5; 8.3 GB at N = 4143)
    labels.h5          key 'avadataset'  [N, 10, 29]            float64 one-hot, background last
    train_order.h5 / val_order.h5 / test_order.h5   key 'order'  int64 row indices

With `--like Annotations.txt` the labels and splits are the real rows' (splits from the *_order.h5 or *Set.txt files
next to it, else the stated rule of `avbt_tacma.synth.like_splits`); without it, N rows get random classes and spans.
Features are random with a small class signal on event segments, so a head learns something and its cost is the
real one. Nothing is downloaded. Writes in chunks of clips (memory stays at a few hundred MB).

    python benchmarks/make_community_features.py --out /work/big/community --like ../shared/ave-meta/Annotations.txt
    python benchmarks/make_community_features.py --out /tmp/feat --rows 60        # small, for a test
"""

import argparse, sys, time
from pathlib import Path
import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, required=True, help='folder for the five .h5 files (created)')
    ap.add_argument('--like', type=Path, default=None, help="a real Annotations.txt: its labels and splits")
    ap.add_argument('--rows', type=int, default=None, help='number of rows (default: all rows of --like, else 4143)')
    ap.add_argument(
        '--dtype', default='float64', choices=('float64', 'float32'), help='stored dtype (community: float64)'
    )
    ap.add_argument('--chunk', type=int, default=64, help='clips per write')
    ap.add_argument(
        '--pooled',
        action='store_true',
        help='visual [N, 10, 512] (the 7x7 map averaged): NOT the community '
        'layout; for timing heads that pool anyway, without writing 8 GB',
    )
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args(argv)
    import h5py
    from avbt_tacma.ave import read_annotations, label_matrix, Record, CATEGORIES, T_SEGMENTS
    from avbt_tacma.synth import like_splits, split_assignment

    rng = np.random.default_rng(a.seed)
    if a.like is not None:
        records = read_annotations(a.like)
        split, src = like_splits(a.like, records)
        if a.rows is not None:
            keep = np.arange(min(a.rows, len(records)))
            records = [records[i] for i in keep]
            split = [split[i] for i in keep]
    else:
        n = 4143 if a.rows is None else a.rows
        records = []
        for i in range(n):
            s = int(rng.integers(0, 9))
            records.append(Record(CATEGORIES[i % 28], f'r{i:010d}', 'good', s, int(rng.integers(s + 1, 11))))
        split, src = split_assignment([i % 28 for i in range(n)], a.seed), 'rule: stratified by class, 80/10/10'
    N = len(records)
    y = label_matrix(records)  # [N, 10, 29] float32
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    ca, cv = rng.standard_normal((29, 128)).astype(np.float32), rng.standard_normal((29, 512)).astype(np.float32)
    with h5py.File(a.out / 'audio_feature.h5', 'w') as fa, h5py.File(a.out / 'visual_feature.h5', 'w') as fv:
        da = fa.create_dataset('avadataset', (N, T_SEGMENTS, 128), dtype=a.dtype)
        vshape = (T_SEGMENTS, 512) if a.pooled else (T_SEGMENTS, 7, 7, 512)
        dv = fv.create_dataset('avadataset', (N, *vshape), dtype=a.dtype)
        for s in range(0, N, a.chunk):
            yc = y[s : s + a.chunk].argmax(-1)
            n = len(yc)
            da[s : s + n] = np.maximum(0, rng.standard_normal((n, T_SEGMENTS, 128), dtype=np.float32) + 0.5 * ca[yc])
            v = rng.standard_normal((n, *vshape), dtype=np.float32)
            v += 0.5 * (cv[yc] if a.pooled else cv[yc][:, :, None, None, :])
            dv[s : s + n] = np.maximum(v, 0, out=v)
    with h5py.File(a.out / 'labels.h5', 'w') as f:
        f['avadataset'] = y.astype(a.dtype)
    for s in ('train', 'val', 'test'):
        with h5py.File(a.out / f'{s}_order.h5', 'w') as f:
            f['order'] = np.array([i for i, x in enumerate(split) if x == s], np.int64)
    size = sum(p.stat().st_size for p in a.out.glob('*.h5'))
    print(
        f"wrote {N} rows to {a.out} ({size / 1e9:.2f} GB, {a.dtype}) in {time.time() - t0:.0f} s; splits from {src}: "
        + '/'.join(str(split.count(s)) for s in ('train', 'val', 'test'))
    )


if __name__ == '__main__':
    sys.exit(main())
