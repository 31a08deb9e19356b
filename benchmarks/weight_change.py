#!/usr/bin/env python
"""How far AV-BT moves its encoders at the paper's learning rate (ResNet-50 + VGGish, rehearsal shapes, CPU).

Builds the paper's AV-BT model (`AVBTConfig.preset('paper')`: VGGish + ResNet-50, 224 px frames, Bi-LSTMs, the
2048-4096-4096 shared projector) with random initial weights (no weight files needed), the paper's optimiser (LARS,
momentum 0.9, eta 1e-3, Barlow Twins' rates x batch/256 x the paper's factor 2e-4) and runs `--steps` steps on random
inputs of the rehearsal's shape (batch 2 clips of 10 segments: log-mel [10, 1, 96, 64], frames [10, 3, 224, 224]),
fresh inputs each step. The learning rate is held at the paper's peak (batch 128, past warm-up: weights 2e-5, biases
4.8e-7), the fastest rate of the paper's schedule. After every step it records, with `train_avbt.weight_change` (the
code every AV-BT training uses for `weight_change.json`), per weight matrix ||w_n - w_0|| / ||w_0|| and the LARS bound
eta x sum(lr) / (1 - momentum).

The extrapolation to the paper's run (100 epochs of 3339 // 128 = 26 steps: 2,600 steps, 10 warm-up epochs, cosine
decay to 1/10) is a rule, not a measurement. The bound grows linearly in the summed learning rate, so the paper's run
has the bound eta x sum_s lr(s) / (1 - momentum) over its schedule. The measured change is carried to it at the
fraction of the bound's growth measured over the second half of the steps (the linear rule: right while the change
grows linearly in steps), and, for comparison, as a random walk (uncorrelated steps: the change grows like the root of
the summed squared learning rates). The trend (log-log slope of the median change over the second half: 1 = linear,
0.5 = a random walk) says which rule the measured steps follow.

    nice -n 10 python benchmarks/weight_change.py                      # 24 steps, batch 2
    nice -n 10 python benchmarks/weight_change.py --steps 8 --json /tmp/wc.json
    python benchmarks/weight_change.py --from-json /tmp/wc.json                 # its summary again, no training
"""
import argparse, json, math, os, time
import numpy as np
import torch
from avbt_tacma.avbt import AVBTConfig, AVBT, avbt_loss, make_optimizer, adjust_lr, lr_at
from avbt_tacma.train_avbt import weight_change
from bench_avbt_cpu import AVE_TRAIN

GROUPS = (('audio CNN (VGGish)', 'audio_cnn.'), ('visual CNN (ResNet-50)', 'visual_cnn.'),
          ('Bi-LSTMs', ('audio_lstm.', 'visual_lstm.')), ('projector', 'projector'))

def paper_run(cfg: AVBTConfig,  # the paper's config (batch, epochs, warm-up, rates)
             ) -> tuple:
    "Steps of the paper's run, the sum of its weights' learning rates over them and the sum of their squares."
    per_epoch = AVE_TRAIN // cfg.batch_size
    total, warmup = cfg.epochs * per_epoch, cfg.warmup_epochs * per_epoch
    peak = cfg.base_lr_weights * cfg.batch_size / 256 * cfg.lr_factor
    lrs = [lr_at(s, total, warmup, peak, cfg.final_lr_ratio) for s in range(total)]
    return total, sum(lrs), sum(l * l for l in lrs)

def group_stats(layers: list,  # the `layers` of a `weight_change` record
               ) -> dict:
    "Median and max relative change per group of matrices (and of all of them)."
    out = {}
    for name, prefix in GROUPS:
        r = [l['rel_change'] for l in layers if l['name'].startswith(prefix)]
        if r: out[name] = (len(r), float(np.median(r)), float(np.max(r)))
    r = [l['rel_change'] for l in layers]
    out['all weight matrices'] = (len(r), float(np.median(r)), float(np.max(r)))
    return out

def train(steps: int,         # training steps
          batch: int,         # clips per step
          seed: int,          # torch seed: initial weights and inputs
         ) -> dict:
    "Run the steps; every step's `weight_change` record and the run's settings."
    torch.manual_seed(seed)
    cfg = AVBTConfig.preset('paper', weights='none')
    net = AVBT(cfg, download=False).train()
    start = {k: v.detach().clone() for k, v in net.named_parameters() if v.ndim > 1}
    opt = make_optimizer(net, cfg)
    warm = cfg.warmup_epochs * (AVE_TRAIN // cfg.batch_size)
    lr_w, lr_b = adjust_lr(opt, warm, 10 * warm, warm, cfg)     # past warm-up: the schedule's peak, batch 128
    S = cfg.image_size
    print(f"AV-BT, paper preset, random init: {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M parameters; "
          f"batch {batch} x 10 segments, {S} px; lr weights {lr_w:.3g}, biases {lr_b:.3g}; LARS eta {cfg.eta}, "
          f"momentum {cfg.momentum}; load average {os.getloadavg()[0]:.1f}", flush=True)
    records, lr_sum, t0 = [], 0.0, time.time()
    for step in range(1, steps + 1):
        logmel, frames = torch.randn(batch, 10, 1, 96, 64), torch.randn(batch, 10, 3, S, S)
        loss = avbt_loss(*net(logmel, frames), lambd=cfg.lambd, eps=cfg.eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_sum += opt.param_groups[0]['lr']
        wc = weight_change(start, net, lr_sum, cfg.eta, cfg.momentum) | dict(steps=step, loss=loss.item())
        records.append(wc)
        print(f"step {step:3d}: loss {loss.item():9.2f}, median change {wc['median']:.3e}, max {wc['max']:.3e}, "
              f"bound {wc['lars_bound']:.3e} ({time.time() - t0:.0f} s)", flush=True)
    return dict(steps=steps, batch=batch, seed=seed, lr_weights=lr_w, lr_biases=lr_b, records=records)

def summarize(run: dict,  # what `train` returned (or its saved JSON)
             ) -> dict:
    "Print the per-group table, the measured rate and its trend, and the extrapolation to the paper's run."
    cfg = AVBTConfig.preset('paper')
    records = run['records']
    last, half = records[-1], records[len(records) // 2 - 1] if len(records) >= 2 else records[-1]
    slope = (math.log(last['median'] / half['median']) / math.log(last['steps'] / half['steps'])
             if last['steps'] > half['steps'] else float('nan'))
    total, paper_lr_sum, paper_lr_sq = paper_run(cfg)
    paper_bound = cfg.eta * paper_lr_sum / (1 - cfg.momentum)
    print(f"\nPer group after {last['steps']} steps (relative change ||w_n - w_0|| / ||w_0||; LARS bound "
          f"{last['lars_bound']:.3e}; last column: median/bound x the paper run's bound {paper_bound:.3e}, "
          f"extrapolated):")
    print(f"{'group':24} {'matrices':>8} {'median':>10} {'max':>10} {'median/bound':>13} {'paper (extrap.)':>16}")
    for name, (n, med, mx) in group_stats(last['layers']).items():
        f = med / last['lars_bound']
        print(f"{name:24} {n:8d} {med:10.3e} {mx:10.3e} {f:13.3f} {f * paper_bound:16.2e}")
    frac = last['median'] / last['lars_bound']
    inc = ((last['median'] - half['median']) / (last['lars_bound'] - half['lars_bound'])
           if last['steps'] > half['steps'] else frac)
    linear = inc * paper_bound
    walk = last['median'] * math.sqrt(paper_lr_sq / (last['steps'] * run['lr_weights'] ** 2))
    print(f"\nMeasured: median change {last['median']:.3e} after {last['steps']} steps ({frac:.3f} of the LARS bound), "
          f"{last['median'] / last['steps']:.3e} per step on average; steps {half['steps']}-{last['steps']}: "
          f"{(last['median'] - half['median']) / max(1, last['steps'] - half['steps']):.3e} per step ({inc:.3f} of "
          f"the bound's growth); trend (log-log slope) {slope:.2f} (1: linear in steps, 0.5: random walk)")
    if len(records) >= 2:
        step_inc = last['median'] - records[-2]['median']
        peak = max(b['median'] - a['median'] for a, b in zip(records, records[1:]))
        print(f"Per-step increment of the median: {step_inc:.3e} at the last step (largest {peak:.3e}); local slope "
              f"there {last['steps'] * step_inc / last['median']:.2f}")
    print(f"Extrapolated, not measured: the paper's run ({total} steps, warm-up + cosine, sum of the weights' lr "
          f"{paper_lr_sum:.4g}) has a LARS bound of {paper_bound:.3e} (the bound grows linearly in the summed lr). "
          f"Linear rule (the steps keep one direction; the change grows like the bound at the second half's "
          f"fraction): median ~{linear:.2e}; random-walk rule (uncorrelated steps: sqrt of the summed squared lr): "
          f"~{walk:.2e}.")
    return dict(slope=slope, paper_steps=total, paper_lr_sum=paper_lr_sum, paper_bound=paper_bound,
                extrapolated_linear=linear, extrapolated_random_walk=walk)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=24, help='training steps to run')
    ap.add_argument('--batch', type=int, default=2, help="clips per step (the rehearsal's 2)")
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    ap.add_argument('--json', default=None, help="write every step's record (per-matrix changes) here")
    ap.add_argument('--from-json', default=None, help='print the summary of a saved --json run (no training)')
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f: summarize(json.load(f))
        return
    if a.threads: torch.set_num_threads(a.threads)
    run = train(a.steps, a.batch, a.seed)
    run |= summarize(run)
    if a.json:
        with open(a.json, 'w') as f: json.dump(run, f, indent=1)

if __name__ == '__main__':
    main()
