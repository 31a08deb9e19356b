"""Smoke-check the compiled dependencies right after an install: import each one and call one real function.

Fails with one line naming the broken package and its installed version (e.g. a torchaudio build that does not load
with the installed torch). Run by `.ci/run` and `tests/run.sh`; usable by hand: `python tests/check_install.py`.
"""
import io, sys, tempfile
from importlib.metadata import version, PackageNotFoundError


def _ver(dist):
    try: return version(dist)
    except PackageNotFoundError: return 'not installed'


def _torch():
    import torch
    assert torch.allclose(torch.ones(2, 2) @ torch.ones(2, 2), torch.full((2, 2), 2.))


def _torchaudio():
    import torch, torchaudio.functional as AF
    y = AF.resample(torch.sin(torch.arange(4410.) / 10), 44100, 16000)
    assert y.shape[-1] == 1600, y.shape


def _torchvision():
    import torch, torchvision.transforms.v2 as T
    x = T.Resize(8, antialias=True)(torch.rand(3, 16, 16))
    assert x.shape == (3, 8, 8), x.shape
    import torchvision.ops  # the compiled operators (nms) load here
    torchvision.ops.nms(torch.tensor([[0., 0, 1, 1]]), torch.tensor([1.]), 0.5)


def _av():
    import av, numpy as np
    buf = io.BytesIO()
    with av.open(buf, 'w', format='mp4') as c:
        s = c.add_stream('libx264', rate=4); s.width = s.height = 16; s.pix_fmt = 'yuv420p'
        for i in range(4):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((16, 16, 3), 40 * i, np.uint8), format='rgb24')):
                c.mux(p)
        for p in s.encode(): c.mux(p)
    buf.seek(0)
    with av.open(buf) as c: n = sum(1 for _ in c.decode(video=0))
    assert n == 4, n


def _h5py():
    import h5py, numpy as np
    with tempfile.TemporaryDirectory() as d:
        with h5py.File(f'{d}/x.h5', 'w') as f: f['x'] = np.arange(3)
        with h5py.File(f'{d}/x.h5') as f: assert f['x'][2] == 2


def _numpy_scipy():
    import numpy as np, scipy.stats
    assert abs(scipy.stats.t.ppf(0.975, 10) - 2.228) < 1e-3 and np.linalg.norm(np.ones(4)) == 2


def _pillow():
    from PIL import Image
    buf = io.BytesIO(); Image.new('RGB', (4, 4)).save(buf, 'JPEG'); buf.seek(0)
    assert Image.open(buf).size == (4, 4)


def _matplotlib():
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig = plt.figure(); fig.savefig(io.BytesIO(), format='png'); plt.close(fig)


CHECKS = [('torch', _torch), ('torchaudio', _torchaudio), ('torchvision', _torchvision), ('av', _av),
          ('h5py', _h5py), ('numpy', _numpy_scipy), ('scipy', _numpy_scipy), ('pillow', _pillow),
          ('matplotlib', _matplotlib)]


def main():
    bad = 0
    for dist, fn in CHECKS:
        try: fn()
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f'check_install: {dist} {_ver(dist)} is broken: {type(e).__name__}: {msg[:300]}', file=sys.stderr)
            bad += 1
    if bad: sys.exit(1)
    print('check_install: ok (' + ', '.join(f'{d} {_ver(d)}' for d, _ in CHECKS) + ')')


if __name__ == '__main__': main()
