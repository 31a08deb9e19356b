"""How fast `avbt synth` makes clips: whole sets (clips/s, median of runs) and the cost of each stage of one clip.

Usage: python benchmarks/bench_synth.py [--videos 200] [--runs 3] [--workers 2] [--size 96] [--fps 16]
"""
import argparse, os, resource, statistics, tempfile, time
from pathlib import Path
import numpy as np
from avbt_tacma.synth import (SynthConfig, class_specs, plan_video, render_frames, render_audio, write_mp4,
                              make_synthetic)

def stages(cfg, n=10):
    "Median seconds per clip of planning, frames, audio and encoding, in this process."
    specs, t = class_specs(cfg.classes), {k: [] for k in ('plan', 'frames', 'audio', 'encode')}
    with tempfile.TemporaryDirectory() as d:
        for i in range(n):
            t0 = time.perf_counter(); p = plan_video(cfg, i, i % cfg.classes, specs)
            t1 = time.perf_counter(); fr = render_frames(p, cfg, specs)
            t2 = time.perf_counter(); au = render_audio(p, cfg, specs)
            t3 = time.perf_counter(); write_mp4(Path(d) / f'{i}.mp4', fr, au, cfg.fps, cfg.sample_rate)
            t4 = time.perf_counter()
            for k, a, b in (('plan', t0, t1), ('frames', t1, t2), ('audio', t2, t3),
                            ('encode', t3, t4)): t[k].append(b - a)
    return {k: statistics.median(v) for k, v in t.items()}

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--videos', type=int, default=200); ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--workers', type=int, default=os.cpu_count()); ap.add_argument('--size', type=int, default=96)
    ap.add_argument('--fps', type=int, default=16)
    a = ap.parse_args()
    cfg = SynthConfig(videos=a.videos, size=a.size, fps=a.fps)
    st = stages(cfg)
    print(f"one clip, one process ({a.size}px, {a.fps} fps): " + ', '.join(
        f"{k} {v * 1e3:.0f} ms" for k, v in st.items())
          + f", total {sum(st.values()) * 1e3:.0f} ms")
    rates, cpus, mb = [], [], 0
    def cpu(): return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF,
        resource.RUSAGE_CHILDREN) for f in ('ru_utime', 'ru_stime'))
    for r in range(a.runs):
        with tempfile.TemporaryDirectory() as d:
            t0, c0 = time.perf_counter(), cpu()
            make_synthetic(Path(d) / 's', videos=a.videos, seed=r, size=a.size, fps=a.fps, workers=a.workers,
                           progress=False)
            dt, dc = time.perf_counter() - t0, cpu() - c0
            mb = sum(p.stat().st_size for p in (Path(d) / 's' / 'AVE').glob('*.mp4')) / 2**20
        rates.append(a.videos / dt); cpus.append(dc / a.videos)
        print(f"run {r}: {a.videos} clips in {dt:.1f} s = {rates[-1]:.2f} clips/s, {cpus[-1]:.3f} CPU-s per clip "
              f"({mb:.1f} MiB of mp4)")
    med, mc = statistics.median(rates), statistics.median(cpus)
    print(f"median: {med:.2f} clips/s with {a.workers} workers on {os.cpu_count()} cores -> {a.videos / med:.1f} s "
          f"for {a.videos} clips "
          f"(load average now {os.getloadavg()[0]:.1f})")
    print(f"median CPU: {mc:.3f} CPU-s per clip -> {a.videos * mc / a.workers:.1f} s for {a.videos} clips on "
          f"{a.workers} idle cores")

if __name__ == '__main__': main()
