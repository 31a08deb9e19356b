"""Choose a head's learning rate and epochs on the validation split (never on test).

Trains each head of `--heads` on the baseline AV-BT features of a finished `avbt reproduce` run, for every learning
rate of `--lrs` and epoch count of `--epochs`, with `--seeds` seeds (the run's model store caches each setting, so a
second call is instant), and prints the mean best-epoch validation accuracy of each setting with its standard
deviation; `*` marks the best setting of each head. Test accuracy is not looked at unless `--show-test` is given.

    avbt reproduce --only table3 --out runs/reproduce                  # the features of the default scale
    python benchmarks/tune_heads.py --out runs/reproduce --heads tacma,cma,psp --lrs 5e-3,2e-3,1e-3,5e-4 --epochs 30,60
"""
import argparse, json, statistics
from pathlib import Path
from avbt_tacma.store import Repro


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='runs/reproduce', help='the run folder of a finished run (its run.json and models)')
    p.add_argument('--heads', default='tacma,cma,psp')
    p.add_argument('--lrs', default='5e-3,2e-3,1e-3,5e-4')
    p.add_argument('--epochs', default='30,60')
    p.add_argument('--seeds', type=int, default=4)
    p.add_argument('--show-test', action='store_true',
                   help='also print the test accuracy (for reporting, not for choosing)')
    a = p.parse_args(argv)
    info = json.loads((Path(a.out) / 'run.json').read_text())
    R = Repro('tune', a.out, info['scale'], info['data_source'], info['data'], 'cpu', a.seeds)
    f = R.features('baseline')
    print(f"{f}: {info['scale']} scale, {a.seeds} seeds; mean best-epoch validation accuracy (%)")
    for head in a.heads.split(','):
        rows = []
        for lr in map(float, a.lrs.split(',')):
            for ep in map(int, a.epochs.split(',')):
                s = R.heads(f, head, name=f'tune-{head}-lr{lr:g}-e{ep}', lr=lr, epochs=ep)
                val = [100 * r['val_acc'] for r in s['per_seed']]
                test = [100 * r['test_acc'] for r in s['per_seed']]
                rows.append((statistics.mean(val), statistics.stdev(val), lr, ep, statistics.mean(test)))
        best = max(rows)
        for m, sd, lr, ep, t in rows:
            extra = f"   test {t:5.1f}" if a.show_test else ''
            mark = '*' if (m, sd, lr, ep, t) == best else ''
            print(f"{head:>8} lr {lr:<7g} epochs {ep:>4}: val {m:5.1f} ± {sd:4.1f}{extra} {mark}")


if __name__ == '__main__':
    main()
