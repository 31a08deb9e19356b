#!/usr/bin/env python
"""Speed of `avbt prepare` beside the raw decode speed of the same files with the ffmpeg command-line tool.

    python benchmarks/bench_prepare.py [--clips 200] [--kind synth|ave-like] [--repeats 3] [--workers 1 2]

Figures (medians over --repeats runs, clips per second):
  ffmpeg decode   `ffmpeg -i clip.mp4 -f null -`, one process per clip, one clip at a time: every frame and sample
                  decoded
  ffmpeg same job the same plus what prepare keeps: 16 fps, scaled to 256 x 256 RGB, audio mono 16 kHz
  pyav decode     avbt_tacma.video.decode_clip alone, in-process
  prepare, N      avbt_tacma.prepare.prepare with N worker processes into a fresh cache (JPEG, log-mel, HDF5 files
                  included)
Targets (issue 3): prepare at 1 worker within 1.5x of ffmpeg's time; 2 workers at least 1.7x faster than 1.

ffmpeg is not a dependency of the project; on Debian/Ubuntu: `apt-get install -y ffmpeg` (the ffmpeg part is skipped,
with a note, when it is absent). The clips are generated once into data/bench/ (`--kind synth`: avbt_tacma.synth,
96 x 96, 16 fps, 16 kHz mono, the project's synthetic set; `--kind ave-like`: 480 x 360, 25 fps, 44.1 kHz stereo test
clips, closer to real AVE files). The machine may be shared: the load average is printed before and after.
"""
import argparse, os, resource, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path


def cpu_seconds(who) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def make_clips(kind: str, n: int, root: Path) -> Path:
    from avbt_tacma.ave import Record, write_annotations
    root = root / f'{kind}{n}'
    if (root / 'Annotations.txt').exists() and len(list((root / 'AVE').glob('*.mp4'))) >= n: return root
    print(f"generating {n} {kind} clips in {root} (once) ...", flush=True)
    if kind == 'synth':
        from avbt_tacma.synth import make_synthetic
        make_synthetic(root, videos=n, seed=0, progress=True)
    else:
        from avbt_tacma.video import write_test_clip
        from tqdm.auto import tqdm
        for i in tqdm(range(n)): write_test_clip(root / 'AVE' / f'clip{i:04d}.mp4', size=(480, 360), fps=25, seed=i)
        write_annotations([Record('Bark', f'clip{i:04d}', 'good', 0, 10) for i in range(n)], root / 'Annotations.txt')
    return root


def time_ffmpeg(files, same_job: bool) -> float:
    extra = ['-vf', 'fps=16,scale=256:256,format=rgb24', '-ac', '1', '-ar', '16000'] if same_job else []
    t, c = time.perf_counter(), cpu_seconds(resource.RUSAGE_CHILDREN)
    for f in files:
        subprocess.run(['ffmpeg', '-v', 'error', '-nostdin', '-i', str(f), *extra, '-f', 'null', '-'], check=True)
    return time.perf_counter() - t, cpu_seconds(resource.RUSAGE_CHILDREN) - c


def time_pyav(files) -> float:
    from avbt_tacma.video import decode_clip
    t, c = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
    for f in files: decode_clip(f)
    return time.perf_counter() - t, cpu_seconds(resource.RUSAGE_SELF) - c


def time_prepare(root: Path, workers: int) -> float:
    from avbt_tacma.prepare import prepare
    with tempfile.TemporaryDirectory(dir=root.parent) as d:
        # forked workers are reaped children
        both = lambda: cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN)
        t, c = time.perf_counter(), both()
        s = prepare(root, Path(d) / 'cache', workers=workers, progress=False)
        dt, cpu = time.perf_counter() - t, both() - c
        size = sum(f.stat().st_size for f in (Path(d) / 'cache' / 'clips').glob('*.h5'))
    assert s['skipped'] == 0, s['line']
    print(f"    prepare, {workers} worker(s): {dt:.1f} s, cache {size / s['kept'] / 1e6:.2f} MB per clip", flush=True)
    return dt, cpu


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--clips', type=int, default=200)
    p.add_argument('--kind', choices=('synth', 'ave-like'), default='synth')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--workers', type=int, nargs='+', default=[1, 2])
    p.add_argument('--dir', type=Path, default=None, help='where the generated clips live (default data/bench)')
    a = p.parse_args()
    import torch
    torch.set_num_threads(1)      # as prepare does: the log-mel of one clip is too small for a thread pool
    from avbt_tacma.core import data_root
    from avbt_tacma.prepare import video_dir
    from avbt_tacma.ave import read_annotations
    root = make_clips(a.kind, a.clips, a.dir or data_root() / 'bench')
    files = [video_dir(root) / f'{r.video_id}.mp4' for r in read_annotations(root / 'Annotations.txt')]
    print(f"{len(files)} clips ({a.kind}), {os.cpu_count()} CPUs, load average before: {os.getloadavg()}", flush=True)
    res = {}
    have_ffmpeg = shutil.which('ffmpeg') is not None
    for rep in range(a.repeats):
        print(f"  repeat {rep + 1}/{a.repeats}", flush=True)
        if have_ffmpeg:
            res.setdefault('ffmpeg decode', []).append(time_ffmpeg(files, False))
            res.setdefault('ffmpeg same job', []).append(time_ffmpeg(files, True))
        res.setdefault('pyav decode', []).append(time_pyav(files))
        for w in a.workers: res.setdefault(f'prepare, {w} worker(s)', []).append(time_prepare(root, w))
    if not have_ffmpeg: print("ffmpeg not found: the ffmpeg figures are skipped (apt-get install -y ffmpeg)")
    med = {k: statistics.median(x for x, _ in v) for k, v in res.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in res.items()}
    print(f"\nload average after: {os.getloadavg()}")
    print(f"{'':24s} {'median s':>9s} {'clips/s':>8s} {'CPU s':>7s}   all runs (wall s)")
    for k, v in med.items():
        print(f"{k:24s} {v:9.2f} {len(files) / v:8.1f} {cpu[k]:7.1f}   {', '.join(f'{x:.1f}' for x, _ in res[k])}")
    p1 = med.get('prepare, 1 worker(s)')
    if p1:
        for k in ('ffmpeg decode', 'ffmpeg same job', 'pyav decode'):
            if k in med: print(f"prepare (1 worker) / {k}: {p1 / med[k]:.2f}x the wall time, "
                               f"{cpu['prepare, 1 worker(s)'] / cpu[k]:.2f}x the CPU time" + (' (target <= 1.5x)'
                                   if k.startswith('ffmpeg') else ''))
        for w in a.workers:
            if w > 1: print(f"speed-up of {w} workers over 1: {p1 / med[f'prepare, {w} worker(s)']:.2f}x (target >= "
                            f"1.7x for 2); "
                            f"CPU per clip {1e3 * cpu[f'prepare, {w} worker(s)'] / len(files):.0f} ms vs "
                            f"{1e3 * cpu['prepare, 1 worker(s)'] / len(files):.0f} ms at 1 worker")


if __name__ == '__main__':
    sys.exit(main())
