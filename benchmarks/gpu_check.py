#!/usr/bin/env python
"""Everything a paper-scale run costs, measured in one call on a GPU machine, printed as one table.

Sections (each in its own process with its own time limit, so one failure never hides the others):

  avbt      AV-BT paper configuration (ResNet-50 + VGGish, 224 px, batch 128 or the largest that fits), one training
            step, bf16 autocast + channels_last, eager and torch.compile (benchmarks/bench_avbt_gpu.py)
  flops     FLOPs of that step (torch.utils.flop_counter.FlopCounterMode, forward + loss + backward at a small batch,
            scaled to 128) and the utilisation the measured step time implies
  data      `avbt synth --like` and `avbt prepare` of a paper-shaped set (480x360, 25-30 fps, 44.1 kHz stereo) with
            all cores, then the AV-BT data loader (JPEG frames from the cache, Table 5 crop + blur, 224 px) with one
            worker per core: frames/s
  rehearsal `avbt reproduce --scale rehearsal --device cuda --data <that set>` ("not available" when the scale is
            missing)
  tacma     `avbt train-tacma` (TACMA, 1 seed) on AVE-size features [4143, 10, 128] / [4143, 10, 512]: 200 epochs when
            10 epochs say it fits the time left, else the 10-epoch time scaled
  project   the projected GPU hours of every paper-scale step from the figures above

Installs nothing, needs no network: weights are random (the cost is the same as with pretrained ones), and the
annotations are ../shared/ave-meta/Annotations.txt (or $AVE_META) when present, else a stand-in written here with the
AVE's 28 classes and event-length statistics (said in the table).

    bash benchmarks/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log      # on the GPU machine, about 8-9 minutes
    bash benchmarks/gpu_check.sh --dry-run                          # tiny, on a CPU: checks the script itself
"""

import argparse, json, os, re, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
AVE_TRAIN, AVE_ROWS, PEAK_TFLOPS = 3339, 4143, 790.0  # H200 dense bf16 peak, TFLOP/s (vendor figure)
# paper-scale counts (paper Sec. 4, Tables 2-5; nbs/17_reproduce's 'paper' scale): README "What a paper-scale run costs"
AVBT_EPOCHS, AVBT_BATCH = 100, 128
AVBT_TRAININGS = {
    'AV-BT baseline': 1,
    'Table 4 variants (AGVA, no shared projector)': 2,
    'Table 5 rows (9 besides the baseline row)': 9,
}
HEAD_EPOCHS, SEEDS = 200, 5
HEAD_TRAININGS = {
    'Table 2 probes (A, V, AV)': 3,
    'Table 3 heads (TACMA, CMA, PSP, PSP+AVPS, AVEL)': 5,
    'Table 4 probes (2 variants x 3)': 6,
    'Table 5 probes (9 rows x AV)': 9,
    'Fig. 6 thetas (11)': 11,
}


def sh(cmd, timeout, env=None, cwd=ROOT):
    "Run `cmd`; (rc, seconds, stdout, stderr); rc 124 on timeout."
    t = time.perf_counter()
    e = {**os.environ, 'PYTHONPATH': f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {})}
    try:
        r = subprocess.run(
            [str(c) for c in cmd], capture_output=True, text=True, timeout=max(1, timeout), env=e, cwd=cwd
        )
        return r.returncode, time.perf_counter() - t, r.stdout, r.stderr
    except subprocess.TimeoutExpired as x:
        return (
            124,
            time.perf_counter() - t,
            (x.stdout or b'').decode(errors='replace') if isinstance(x.stdout, bytes) else (x.stdout or ''),
            'timed out',
        )


def why(rc, out, err):
    "One line saying why a section failed."
    lines = [l for l in (err or out or '').strip().splitlines() if l.strip()]
    return 'timed out' if rc == 124 else (lines[-1][:160] if lines else f'exit {rc}')


def avbt_cli(*args):
    return [PY, '-m', 'avbt_tacma.cli', *map(str, args)]


FLOPS_CHILD = r'''
import json, sys, time, torch
from torch.utils.flop_counter import FlopCounterMode
from avbt_tacma.avbt import AVBT, AVBTConfig, avbt_loss
dry, b = sys.argv[1] == '1', int(sys.argv[2])
dev = torch.device('cpu' if dry or not torch.cuda.is_available() else 'cuda')
cfg = AVBTConfig.preset('synthetic' if dry else 'paper', weights='none')
net = AVBT(cfg).to(dev).train()
la = torch.randn(b, 10, 1, 96, 64, device=dev); fr = torch.randn(b, 10, 3, cfg.image_size, cfg.image_size, device=dev)
with FlopCounterMode(display=False) as fc:
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == 'cuda'):
        za, zv = net(la, fr)
    avbt_loss(za, zv, lambd=cfg.lambd, eps=cfg.eps).backward()
tot = fc.get_total_flops()
mods = {k: v for k, v in fc.get_flop_counts().items() if k.count('.') <= 1}
print('JSON ' + json.dumps(dict(batch=b, flops=tot, per_clip=tot / b, device=str(dev),
      by_module={k: sum(v.values()) for k, v in mods.items()})))
'''

LOADER_CHILD = r'''
import json, os, sys, time, torch
from avbt_tacma.datasets import AVClipDataset, AugConfig, make_loader
cache, (workers, seconds, size, batch) = sys.argv[1], map(float, sys.argv[2:6])
workers, size, batch = int(workers), int(size), int(batch)
torch.set_num_threads(1)
ds = AVClipDataset(cache, 'train', train=True, aug=AugConfig(), size=size)
sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=10**6)   # one long pass: no epoch ends
dl = make_loader(ds, batch, workers=workers, drop_last=True, sampler=sampler, prefetch_factor=4 if workers else None)
frames, t0, warm = 0, None, max(2, workers // 2)
for b in dl:
    if warm: warm -= 1; continue                          # worker start-up is not throughput
    if t0 is None: t0 = time.perf_counter()
    frames += b['frames'].shape[0] * b['frames'].shape[1]
    if time.perf_counter() - t0 > seconds: break
dt = time.perf_counter() - t0
print('JSON ' + json.dumps(dict(workers=workers, frames=frames, seconds=dt, frames_s=frames / dt, clips=len(ds))))
'''


def json_line(out):
    for l in reversed(out.splitlines()):
        if l.startswith('JSON '):
            return json.loads(l[5:])
    return None


def standin_annotations(path, n):
    "A stand-in Annotations.txt: n rows, the 28 classes in turn, spans drawn like the AVE's (no split files: the rule)."
    sys.path.insert(0, str(ROOT))
    from avbt_tacma.ave import Record, write_annotations, CATEGORIES
    from avbt_tacma.synth import SynthConfig, plan_video, video_ids, class_specs

    cfg, specs = SynthConfig(classes=28, seed=7), class_specs(28)
    recs = []
    for i, v in enumerate(video_ids(n, 7)):
        p = plan_video(cfg, i, i % 28, specs)
        recs.append(Record(CATEGORIES[i % 28], v, 'good', p['start'], p['end']))
    write_annotations(recs, path, header=False)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--dry-run', action='store_true', help='tiny, on the CPU, in a minute or two: checks the script')
    ap.add_argument('--budget', type=float, default=None,
                    help='seconds for everything (default 540; dry run 420: a check of the script, not a timing)')
    ap.add_argument('--work', type=Path, default=None, help='scratch folder (default: a temporary one, removed)')
    ap.add_argument('--keep', action='store_true', help='keep the scratch folder')
    a = ap.parse_args()
    dry = a.dry_run
    budget = a.budget or (420.0 if dry else 540.0)
    t_start = time.perf_counter()
    left = lambda: budget - (time.perf_counter() - t_start)
    work = a.work or Path(tempfile.mkdtemp(prefix='gpu_check_'))
    work.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    rows, notes, R = [], [], {}

    def row(section, what, value, how):
        rows.append((section, what, value, how))
        print(f"[{time.perf_counter() - t_start:5.0f} s] {section}: {what} = {value}", flush=True)

    import torch

    gpu = torch.cuda.is_available() and not dry
    dev = torch.cuda.get_device_name() if gpu else 'CPU (dry run)' if dry else 'CPU (no CUDA GPU)'
    if not gpu and not dry:
        notes.append('no CUDA GPU: the GPU sections fail; use --dry-run to check the script on a CPU')
    print(
        f"gpu_check: {dev}, {cores} cores, torch {torch.__version__}, budget {budget:.0f} s, scratch {work}", flush=True
    )

    # -- avbt: step time, eager and compiled (one process each: a slow compilation never hides the eager figure)
    res, t_sec = [], time.perf_counter()
    for mode in ('eager',) if dry else ('eager', 'compile'):
        used = time.perf_counter() - t_sec
        # a dry run's cap leaves room for the imports on a loaded CPU (the bench skips a mode with < 40 s left)
        cap = 90 if dry else (70 if mode == 'eager' else min(130, left() - 300))
        if cap < 45:
            row('avbt', f'step, {mode}', f'skipped: {left():.0f} s of the budget left', '')
            continue
        args = ['--modes', mode, '--budget', str(cap)] + (['--dry-run', '--steps', '2', '--warmup', '1'] if dry else [])
        rc, s, out, err = sh([PY, str(ROOT / 'benchmarks' / 'bench_avbt_gpu.py'), *args], cap + 40)
        got = json_line(out) if rc == 0 else None
        if got:
            res += got
            notes += ['avbt ' + l for l in out.splitlines() if l.startswith('note:')]
        else:
            row('avbt', f'step, {mode}', f"failed: {why(rc, out, err)}", f'in {s:.0f} s')
    for r in res:
        row(
            'avbt',
            f"step, {r['mode']}, batch {r['batch']}",
            f"{r['step_s']:.3f} s ({r['clips_s']:.0f} clips/s, "
            f"peak {r['peak_gb']:.1f} GiB, 1st step {r['first_s']:.0f} s)",
            'measured' + (', synthetic preset, fp32' if dry else ', bf16, channels_last, random weights'),
        )
    if res:
        best = min(res, key=lambda r: r['step_s'] * AVBT_BATCH / r['batch'])
        R['avbt'] = dict(
            step_s=best['step_s'] * AVBT_BATCH / best['batch'],
            mode=best['mode'],
            batch=best['batch'],
            first_s=best['first_s'],
        )

    # -- flops
    b = 2 if dry else 8
    rc, s, out, err = sh(
        [PY, '-c', FLOPS_CHILD, '1' if dry else '0', str(b)], 60 if dry else min(60, max(20, left() - 200))
    )
    res = json_line(out) if rc == 0 else None
    if res:
        step_flops = res['per_clip'] * AVBT_BATCH
        R['flops'] = step_flops
        top = sorted(res['by_module'].items(), key=lambda kv: -kv[1])[:3]
        row(
            'flops',
            'FLOPs per AV-BT step at batch 128',
            f"{step_flops / 1e12:.1f} TFLOP",
            f"counted (FlopCounterMode, batch {b} x {AVBT_BATCH // b}, {res['device']}; "
            + ', '.join(f"{k or 'all'} {v / res['flops']:.0%}" for k, v in top[1:])
            + ')',
        )
        if 'avbt' in R and not dry:
            util = step_flops / R['avbt']['step_s'] / (PEAK_TFLOPS * 1e12)
            R['util'] = util
            row(
                'flops',
                'implied utilisation of the H200 bf16 peak',
                f"{util:.0%}",
                f"FLOPs / measured step / {PEAK_TFLOPS:.0f} TFLOP/s",
            )
    else:
        row('flops', 'FLOPs per step', f"failed: {why(rc, out, err)}", '')

    # -- data: synth --like, prepare, loader
    metas = [Path(os.environ['AVE_META'])] if os.environ.get('AVE_META') else []
    ann_src = next(
        (
            m / 'Annotations.txt'
            for m in metas + [ROOT / 'shared' / 'ave-meta', ROOT.parent / 'shared' / 'ave-meta']
            if (m / 'Annotations.txt').exists()
        ),
        Path('/nonexistent'),
    )
    rows_like = 8 if dry else 168
    if ann_src.exists():
        ann, which = ann_src, f'the real AVE annotations ({rows_like} rows, order-file splits)'
    else:
        (work / 'standin').mkdir(exist_ok=True)
        ann, which = (
            standin_annotations(work / 'standin' / 'Annotations.txt', AVE_ROWS),
            f'a stand-in Annotations.txt ({rows_like} of {AVE_ROWS} rows; real file absent)',
        )
    like, cache = work / 'like', work / 'cache'
    fsize = '96x72' if dry else '480x360'
    rc, s, out, err = sh(
        avbt_cli(
            'synth', '--like', ann, '--videos', rows_like, '--out', like, '--frame-size', fsize, '--workers', cores
        ),
        60 if dry else min(90, max(20, left() - 170)),
    )
    if rc == 0:
        R['synth'] = rows_like / s
        row(
            'data',
            f'avbt synth --like, {fsize}, {cores} workers',
            f"{rows_like / s:.2f} clips/s ({s:.0f} s for {rows_like})",
            f'measured, {which}',
        )
        rc, s, out, err = sh(
            avbt_cli('prepare', '--ave-root', like, '--out', cache, '--workers', cores, '--quiet'),
            60 if dry else min(90, max(20, left() - 140)),
        )
        if rc == 0:
            mb = sum(p.stat().st_size for p in cache.rglob('*') if p.is_file()) / 2**20
            R['prepare'] = rows_like / s
            R['cache_mb_clip'] = mb / rows_like
            row(
                'data',
                f'avbt prepare, {cores} workers',
                f"{rows_like / s:.2f} clips/s, cache {mb / rows_like:.1f} MiB/clip",
                'measured',
            )
            secs = 5 if dry else 30
            rc, s, out, err = sh(
                [
                    PY,
                    '-c',
                    LOADER_CHILD,
                    str(cache),
                    str(min(cores, 2) if dry else cores),
                    str(secs),
                    '64' if dry else '224',
                    '4' if dry else '16',
                ],
                secs + 60,
            )
            res = json_line(out) if rc == 0 else None
            if res:
                R['loader'] = res['frames_s']
                row(
                    'data',
                    f"AV-BT loader, {res['workers']} workers, crop+blur, {'64' if dry else '224'} px",
                    f"{res['frames_s']:.0f} frames/s ({res['frames_s'] / res['workers']:.0f} per worker)",
                    f"measured over {res['seconds']:.0f} s",
                )
            else:
                row('data', 'loader', f"failed: {why(rc, out, err)}", '')
        else:
            row('data', 'avbt prepare', f"failed: {why(rc, out, err)}", '')
    else:
        row('data', 'avbt synth --like', f"failed: {why(rc, out, err)}", '')

    # -- rehearsal
    rc, s, out, err = sh(avbt_cli('reproduce', '--help'), 60)
    if rc != 0 or 'rehearsal' not in out:
        row('rehearsal', 'avbt reproduce --scale rehearsal', 'not available', 'this checkout has no rehearsal scale')
    elif dry:
        row('rehearsal', 'avbt reproduce --scale rehearsal', 'available; not run in a dry run',
            '--gpus available' if '--gpus' in out else 'no --gpus in this checkout')
    elif not like.exists():
        row('rehearsal', 'avbt reproduce --scale rehearsal', 'not run: no synth --like set', '')
    else:
        cap = max(30, left() - 70)
        # the prepared cache of the data section (no second prepare); --gpus 0: the AV-BT trainings through the
        # multi-GPU dispatch (one process on GPU 0), then the notebooks reuse them
        gpus = ['--gpus', '0'] if '--gpus' in out else []
        rc, s, out, err = sh(
            avbt_cli(
                'reproduce', '--scale', 'rehearsal', '--device', 'cuda', '--data', cache if cache.exists() else like,
                '--out', work / 'rehearsal', *gpus
            ),
            cap,
        )
        row(
            'rehearsal',
            f"avbt reproduce --scale rehearsal --device cuda {' '.join(gpus)} ({rows_like} rows)",
            f"passed in {s:.0f} s"
            if rc == 0
            else f"{'did not finish' if rc == 124 else 'FAILED'} in {s:.0f} s: "
            f"{why(rc, out, err) if rc != 124 else (out.strip().splitlines() or ['no output'])[-1][:120]}",
            'measured',
        )

    # -- tacma on AVE-size features
    feat = work / 'feat'
    n = 300 if dry else AVE_ROWS
    rc, s, out, err = sh(
        [
            PY,
            str(ROOT / 'benchmarks' / 'make_community_features.py'),
            '--out',
            feat,
            '--rows',
            n,
            '--pooled',
            '--dtype',
            'float32',
        ],
        60,
    )
    if rc == 0:
        dv = 'cpu' if dry else 'cuda'
        e1 = 2 if dry else 10
        base = ['train-tacma', '--features', feat, '--head', 'tacma', '--seeds', 1, '--device', dv, '--no-progress']
        rc, s10, out, err = sh(avbt_cli(*base, '--epochs', e1, '--out', work / 'h10'), max(20, min(90, left() - 10)))
        if rc == 0:
            per = s10 / e1  # includes start-up: an upper bound per epoch
            if not dry and per * HEAD_EPOCHS < left() - 15:
                rc, s200, out, err = sh(avbt_cli(*base, '--epochs', HEAD_EPOCHS, '--out', work / 'h200'), left() - 10)
                if rc == 0:
                    R['head_s'] = s200
                    row(
                        'tacma',
                        f'TACMA {HEAD_EPOCHS} epochs, 1 seed, {n} rows',
                        f"{s200:.0f} s",
                        f'measured, {dv}, wall incl. start-up',
                    )
                else:
                    row('tacma', f'TACMA {HEAD_EPOCHS} epochs', f"failed: {why(rc, out, err)}", '')
            if 'head_s' not in R:
                R['head_s'] = per * HEAD_EPOCHS
                row(
                    'tacma',
                    f'TACMA {HEAD_EPOCHS} epochs, 1 seed, {n} rows',
                    f"{per * HEAD_EPOCHS:.0f} s",
                    f'projected from {e1} measured epochs ({s10:.0f} s, {dv})',
                )
        else:
            row('tacma', 'TACMA', f"failed: {why(rc, out, err)}", '')
    else:
        row('tacma', 'features', f"failed: {why(rc, out, err)}", '')

    # -- projections
    steps = AVE_TRAIN // AVBT_BATCH * AVBT_EPOCHS
    if 'avbt' in R:
        st = R['avbt']['step_s']
        bound = AVBT_BATCH * 10 / R['loader'] if 'loader' in R else 0.0
        eff = max(st, bound)
        lim = 'data loader' if bound > st else 'GPU'
        ext = (AVE_ROWS / AVBT_BATCH) * st / 3  # forward only, ~1/3 of a training step
        tot_h = 0.0
        for k, m in AVBT_TRAININGS.items():
            h = m * (steps * eff + ext) / 3600
            tot_h += h
            row(
                'project',
                f'{k}: {m} x {steps} steps + feature extraction',
                f"{h:.2f} GPU h",
                f"projected: {eff:.3f} s/step ({lim}-bound: step {st:.3f} s {R['avbt']['mode']}, loader {bound:.3f} s)",
            )
        if 'head_s' in R:
            for k, m in HEAD_TRAININGS.items():
                h = m * SEEDS * R['head_s'] / 3600
                tot_h += h
                row(
                    'project',
                    f'{k} x {SEEDS} seeds',
                    f"{h:.2f} GPU h",
                    f"projected: {m * SEEDS} x TACMA's {R['head_s']:.0f} s",
                )
        row('project', 'total, one GPU', f"{tot_h:.1f} GPU h", 'projected: sum of the rows above')
    else:
        row('project', 'paper-scale steps', 'not projected: no AV-BT step time', '')
    if 'cache_mb_clip' in R:
        row(
            'project',
            f'cache of {AVE_ROWS} clips',
            f"{R['cache_mb_clip'] * AVE_ROWS / 1024:.1f} GiB",
            'projected: measured MiB/clip x rows',
        )
    if 'prepare' in R:
        row(
            'project',
            f'avbt prepare of {AVE_ROWS} clips, {cores} cores',
            f"{AVE_ROWS / R['prepare'] / 60:.0f} min",
            'projected: measured clips/s',
        )

    # -- the table
    w = [max(len(str(r[i])) for r in rows + [('section', 'what', 'value', 'how')]) for i in range(4)]
    w = [min(x, y) for x, y in zip(w, (9, 70, 48, 200))]
    if dry:
        notes.append('dry run: tiny models and data on a CPU; the figures check the script, they are not costs')
    print(
        f"\n== gpu_check: {dev}, {cores} cores, torch {torch.__version__}{', DRY RUN (tiny, CPU)' if dry else ''}; "
        f"random weights (no pretrained files needed); {time.perf_counter() - t_start:.0f} s"
    )
    print(' | '.join(h.ljust(x) for h, x in zip(('section', 'what', 'value', 'how'), w)))
    print('-+-'.join('-' * x for x in w))
    for r in rows:
        print(' | '.join(str(c).ljust(x) for c, x in zip(r, w)))
    for n_ in notes:
        print('note:', n_)
    print('JSON ' + json.dumps(dict(device=dev, cores=cores, dry=dry, results=R, rows=rows)))
    if not (a.keep or a.work):
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
