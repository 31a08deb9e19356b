#!/usr/bin/env python
"""AV-BT training throughput and peak memory on this CPU.

One training step = forward of both encoders and the projector, the per-clip correlation loss, backward, and a LARS
step. Inputs are random tensors of the real shapes (10 segments per clip: log-mel [10, 1, 96, 64], frames
[10, 3, S, S]), so the figure is the model's cost without data loading. Weights are random ('none'): the cost is the
same as with pretrained weights and the script runs offline.

Each configuration runs in its own process, so its peak resident memory (ru_maxrss: torch's allocations are invisible
to tracemalloc, and psutil reports no peak on Linux) is its own. Prints a table: median step time, clips/s, resident
memory after building the model, peak resident memory, and the time one epoch of the AVE train split (3339 clips)
would take at that speed. The machine's load average is printed too: on a shared machine the times are noisy.

    python benchmarks/bench_avbt_cpu.py                       # paper (batch 2) and synthetic (batch 32)
    python benchmarks/bench_avbt_cpu.py --configs paper --batch 4 --steps 5
"""
import argparse, json, os, resource, statistics, subprocess, sys, time

AVE_TRAIN = 3339

def peak_rss_mb() -> float:
    "Peak resident memory of this process: ru_maxrss (kilobytes on Linux, bytes on macOS); psutil has no peak on Linux."
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == 'darwin' else r / 1024

def child(name: str, batch: int, steps: int, warmup: int, threads: int) -> dict:
    import torch
    from avbt_tacma.avbt import AVBTConfig, AVBT, avbt_loss, make_optimizer, adjust_lr
    if threads: torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = AVBTConfig.preset(name, weights='none')
    net = AVBT(cfg).train()
    opt = make_optimizer(net)
    adjust_lr(opt, 5, 100, 10, cfg, batch)
    la = torch.randn(batch, 10, 1, 96, 64)
    fr = torch.randn(batch, 10, 3, cfg.image_size, cfg.image_size)
    rss_model = peak_rss_mb()
    times, cpu = [], []
    for i in range(warmup + steps):
        t, c = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = avbt_loss(*net(la, fr), lambd=cfg.lambd, eps=cfg.eps)
        loss.backward(); opt.step()
        if i >= warmup: times.append(time.perf_counter() - t); cpu.append(time.process_time() - c)
    med = statistics.median(times)
    return dict(config=name, batch=batch, image=cfg.image_size, params_m=sum(p.numel() for p in net.parameters()) / 1e6,
                step_s=med, step_min_s=min(times), cpu_s=statistics.median(cpu), clips_s=batch / med,
                rss_model_mb=rss_model, peak_rss_mb=peak_rss_mb(),
                epoch_h=AVE_TRAIN / (batch / med) / 3600, threads=torch.get_num_threads(), loss=loss.item())

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--configs', default='paper,synthetic')
    ap.add_argument('--batch', type=int, default=None, help='clips per step (default: 2 for paper, 32 for synthetic)')
    ap.add_argument('--steps', type=int, default=5); ap.add_argument('--warmup', type=int, default=1)
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    ap.add_argument('--child', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print('RESULT ' + json.dumps(child(a.child, a.batch, a.steps, a.warmup, a.threads))); return
    rows = []
    for name in a.configs.split(','):
        batch = a.batch or {'paper': 2, 'synthetic': 32}.get(name, 2)
        cmd = [sys.executable, __file__, '--child', name, '--batch', str(batch), '--steps', str(a.steps),
               '--warmup', str(a.warmup), '--threads', str(a.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = [l for l in out.stdout.splitlines() if l.startswith('RESULT ')]
        if out.returncode or not line: print(out.stdout, out.stderr,
                                             file=sys.stderr); sys.exit(f'{name}: benchmark failed')
        rows.append(json.loads(line[0][7:]))
    load = os.getloadavg()[0]
    print(f"AV-BT training step on CPU ({os.cpu_count()} cores, load average {load:.1f}; median of {a.steps} steps "
          f"after {a.warmup} warm-up)")
    print(f"{'config':10} {'params':>8} {'image':>5} {'batch':>5} {'step s':>7} {'CPU s':>7} {'clips/s':>8} "
          f"{'model MB':>9} {'peak MB':>8} {'epoch (3339 clips)':>19}")
    for r in rows:
        print(f"{r['config']:10} {r['params_m']:7.1f}M {r['image']:5d} {r['batch']:5d} {r['step_s']:7.2f} "
              f"{r['cpu_s']:7.2f} {r['clips_s']:8.2f} {r['rss_model_mb']:9.0f} {r['peak_rss_mb']:8.0f} "
              f"{r['epoch_h']:17.2f} h")
    print("step s: wall-clock median; CPU s: process CPU time per step over all threads "
          "(step s x threads when the cores are free)")

if __name__ == '__main__':
    main()
