"""The known optimum as an upper bound: heads trained on rendering (a) of a preset against its Bayes accuracy.

Writes `--clips` clips of `--preset` (60/20/20 split, so 2,000 test clips from 10,000), trains each head of `--heads`
with one seed, and prints its test accuracy beside the known optimum of the modalities it sees (audio only, visual
only or audio-visual, all 10 s and the same second only) with the optimum's standard error, and the share of the gap
from the majority label to its bound that it closes: the same-second optimum for a probe (it sees one segment at a
time), the all-10-s one for the attention heads. A head above its bound by more than 3 standard errors (plus the
head's own binomial error) would mean the closed form is wrong.

    python benchmarks/known_answer.py --preset ave-balance --clips 10000 --heads probe_a,probe_v,probe_av,tacma
"""
import argparse, math
from pathlib import Path
import torch
from avbt_tacma.known import write_known
from avbt_tacma.features import load_features
from avbt_tacma.train_heads import train_head

SEES = {'probe_a': 'audio', 'probe_v': 'visual'}     # every other head sees both modalities


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--preset', default='ave-balance')
    p.add_argument('--clips', type=int, default=10000)
    p.add_argument('--heads', default='probe_a,probe_v,probe_av,tacma')
    p.add_argument('--epochs', type=int, default=30)
    p.add_argument('--attention-lr', type=float, default=1e-3, help='lr of tacma, cma and psp (probes: 5e-3)')
    p.add_argument('--out', default='/tmp/known-answer')
    p.add_argument('--device', default='cpu')
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out) / f'{a.preset}-{a.clips}'
    meta = write_known(out, a.preset, clips=a.clips)
    k, fs = meta['known'], load_features(out)
    n = k['clips'] * 10
    print(f"{a.preset}: {a.clips} clips, {k['clips']} test clips; majority {k['majority']:.1f}; known optimum audio "
          f"{k['audio']:.1f}, visual {k['visual']:.1f}, audio-visual {k['audio_visual']:.1f} "
          f"(same second only {k['windowed']['0']:.1f})")
    for h in a.heads.split(','):
        sees = SEES.get(h, 'audio_visual')
        kw = dict(d_l=fs.audio.shape[-1], d_h=fs.audio.shape[-1], d_e=fs.audio.shape[-1] // 2) if h in (
            'tacma', 'cma') else {}
        lr = a.attention_lr if h in ('tacma', 'cma', 'psp') else 5e-3
        r = train_head(fs, h, seed=0, epochs=a.epochs, batch_size=64, lr=lr, device=a.device, progress=False, **kw)
        acc, opt, se = 100 * r['test_acc'], k[sees], k[sees + '_se']
        same = k['windowed']['0'] if sees == 'audio_visual' else k.get(sees + '_w0', float('nan'))
        bound = same if h.startswith('probe') else opt
        err = math.hypot(se, 100 * math.sqrt(acc / 100 * (1 - acc / 100) / n))
        print(f"  {h:9s} {acc:5.1f}  optimum ({sees}) {opt:5.1f} ± {se:.1f} (same second only {same:.1f})  gap closed "
              f"to its bound {bound:.1f}: {100 * (acc - k['majority']) / (bound - k['majority']):4.0f}%  "
              f"{'ABOVE its bound beyond 3 standard errors' if acc > bound + 3 * err else 'below or within error'}")


if __name__ == '__main__':
    main()
