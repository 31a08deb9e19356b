#!/usr/bin/env python
"""AV-BT training throughput on one GPU: the paper configuration at batch 128, bf16 autocast, channels_last, eager and
torch.compile.

One step = forward (ResNet-50 on 10 frames per clip at 224, VGGish on 10 log-mel examples, two Bi-LSTMs, the shared
2048/4096/4096 projector), the per-clip correlation loss in float32, backward, LARS. Inputs are random tensors already
on the GPU, so the figure is the model's cost without data loading; weights are random ('none') so the script runs
offline with the same cost as pretrained ones.

If a batch does not fit in memory it is halved (and said so): the paper's batch then needs gradient accumulation or
several GPUs. Prints a compact table (median step time, clips/s, peak memory, compile time) and the time one epoch of
the AVE train split (3339 clips) would take; `--budget` (seconds, default 230) bounds the whole run.

    python benchmarks/bench_avbt_gpu.py                  # batch 128, eager then compiled
    python benchmarks/bench_avbt_gpu.py --modes eager --batch 64 --steps 20
    python benchmarks/bench_avbt_gpu.py --dry-run        # tiny synthetic run on CPU: checks the script itself
"""
import argparse, gc, json, statistics, sys, time

AVE_TRAIN = 3339

def run(mode, cfg, batch, steps, warmup, device, amp, deadline):
    import torch
    from avbt_tacma.avbt import AVBT, avbt_loss, make_optimizer, adjust_lr
    torch.manual_seed(0)
    net = AVBT(cfg).to(device).train()
    if device.type == 'cuda': net = net.to(memory_format=torch.channels_last)
    opt = make_optimizer(net); adjust_lr(opt, 5, 100, 10, cfg, batch)
    la = torch.randn(batch, 10, 1, 96, 64, device=device)
    fr = torch.randn(batch, 10, 3, cfg.image_size, cfg.image_size, device=device)
    model = torch.compile(net) if mode == 'compile' else net
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            z_a, z_v = model(la, fr)
        loss = avbt_loss(z_a, z_v, lambd=cfg.lambd, eps=cfg.eps)
        loss.backward(); opt.step()
        return loss

    t0 = time.perf_counter(); step(); sync(); first = time.perf_counter() - t0   # includes compilation
    for _ in range(max(0, warmup - 1)): step()
    sync(); times = []
    for _ in range(steps):
        if time.perf_counter() > deadline and len(times) >= 3: break
        t = time.perf_counter(); loss = step().detach(); sync(); times.append(time.perf_counter() - t)
    med = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == 'cuda' else float('nan')
    del model, net, opt
    if device.type == 'cuda': torch.cuda.empty_cache()
    return dict(mode=mode, batch=batch, first_s=first, step_s=med, clips_s=batch / med, peak_gb=peak,
                epoch_s=AVE_TRAIN / (batch / med), steps=len(times), loss=loss.item())

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--modes', default='eager,compile')
    ap.add_argument('--steps', type=int, default=10); ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--budget', type=float, default=230.0, help='seconds for the whole run')
    ap.add_argument('--dry-run', action='store_true', help='tiny synthetic model on CPU, to check the script')
    a = ap.parse_args()
    start = time.perf_counter()
    import torch
    from avbt_tacma.avbt import AVBTConfig
    if a.dry_run:   # eager only unless asked: inductor on CPU needs a C++ toolchain and minutes
        cfg, device, amp, batch = AVBTConfig.preset('synthetic'), torch.device('cpu'), False, 4
        if '--modes' not in sys.argv: a.modes = 'eager'
    else:
        if not torch.cuda.is_available(): sys.exit('no CUDA GPU: run with --dry-run to check the script on CPU')
        cfg, device, amp, batch = AVBTConfig.preset('paper', weights='none'), torch.device('cuda'), True, a.batch
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True; torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'
    rows, notes = [], []
    for mode in a.modes.split(','):
        left = a.budget - (time.perf_counter() - start)
        if left < 40: notes.append(f'{mode}: skipped, {left:.0f} s of the budget left'); continue
        b, oom = batch, False
        while b >= 1:
            if oom: gc.collect(); torch.cuda.empty_cache()
            try:
                rows.append(run(mode, cfg, b, a.steps, a.warmup, device, amp, start + a.budget - 10)); break
            except torch.cuda.OutOfMemoryError:
                notes.append(f'{mode}: batch {b} does not fit in GPU memory; halving'); oom = True; b //= 2
    print(f"AV-BT training step, {name}, {'bf16 autocast + channels_last' if amp else 'fp32'}, "
          f"{cfg.visual_backbone}+{cfg.audio_backbone}, {cfg.image_size}px, 10 segments per clip, torch "
          f"{torch.__version__}")
    print(f"{'mode':8} {'batch':>5} {'1st step s':>10} {'step s':>7} {'clips/s':>8} {'peak GiB':>8} "
          f"{'epoch (3339) s':>14}")
    for r in rows:
        print(f"{r['mode']:8} {r['batch']:5d} {r['first_s']:10.1f} {r['step_s']:7.3f} {r['clips_s']:8.1f} "
              f"{r['peak_gb']:8.1f} {r['epoch_s']:14.1f}")
    if len(rows) == 2 and rows[0]['batch'] == rows[1]['batch']:
        print(f"compile speed-up: {rows[0]['step_s'] / rows[1]['step_s']:.2f}x; 100 epochs at the faster speed: "
              f"{min(r['epoch_s'] for r in rows) * 100 / 3600:.2f} h (model only, no data loading)")
    for n in notes: print('note:', n)
    print('JSON ' + json.dumps(rows))
    print(f"total {time.perf_counter() - start:.0f} s")

if __name__ == '__main__':
    main()
