"""Time per training epoch of the heads on features of the real AVE's size.

3339 training clips x 10 segments, 512-d audio and visual features (random numbers: the speed does not depend on the
values), batch 128, the heads' default widths, Adam. Prints the median over a few epochs (after one warm-up epoch)
of (a) the training pass and (b) the evaluation of the 402 val + 402 test clips that train_head does every epoch,
and what 200 epochs would take. On the CPU for each requested thread count; on CUDA too when present.

    python benchmarks/bench_heads.py                       # tacma and psp, CPU (1 and 2 threads) [+ CUDA]
    python benchmarks/bench_heads.py --heads tacma,psp,cma,probe_av --epochs 5
    python benchmarks/bench_heads.py --heads avel          # spatial 7x7x512 input: ~3.3 GB of features in memory

Official PSP side by side (`--official-psp DIR`, DIR = a checkout of github.com/jasongief/PSP_CVPR_2021, kept outside
this repository): one training epoch of the release's own step (its `psp_net`, its `AVE_Fully_Dataset.get_batch`, CE +
100 AVPS, Adam; `.cuda()` made a no-op so it runs on the CPU) against one epoch of the official-architecture PSP
through this project's training code (`run_epoch`, recipe 'official'), fp32 and `fast` (bfloat16 region products), on
the same random spatial features, same thread count, in one run:

    python benchmarks/bench_heads.py --official-psp /tmp/PSP_CVPR_2021 --n-train 384 --threads 2
"""
import argparse, contextlib, random, statistics, sys, time
import numpy as np
import torch
from avbt_tacma.train_heads import build_head, train_epoch, accuracy_on, head_needs_spatial


def bench(head, device, n_train, n_eval, epochs, batch_size, threads=None):
    if threads: torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    spatial = head_needs_spatial(head)
    vshape = (7, 7, 512) if spatial else (512,)
    a = torch.randn(n_train, 10, 512, device=dev); v = torch.randn(n_train, 10, *vshape, device=dev)
    y = torch.randint(0, 29, (n_train, 10), device=dev)
    ea = torch.randn(n_eval, 10, 512, device=dev); ev = torch.randn(n_eval, 10, *vshape, device=dev)
    ey = torch.randint(0, 29, (n_eval, 10), device=dev)
    model = build_head(head, 512, 512).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
    tr, evt = [], []
    for e in range(epochs + 1):
        sync(); t = time.perf_counter()
        train_epoch(model, opt, a, v, y, batch_size, gen)
        sync(); t1 = time.perf_counter()
        accuracy_on(model, ea, ev, ey); accuracy_on(model, ea, ev, ey)     # val and test, as train_head does
        sync(); t2 = time.perf_counter()
        if e: tr.append(t1 - t); evt.append(t2 - t1)                       # epoch 0 is warm-up
    n_params = sum(p.numel() for p in model.parameters())
    return statistics.median(tr), statistics.median(evt), n_params


@contextlib.contextmanager
def _cuda_is_cpu():
    "Let the release's code, which calls .cuda() everywhere, run on the CPU."
    saved = torch.Tensor.cuda, torch.nn.Module.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    try: yield
    finally: torch.Tensor.cuda, torch.nn.Module.cuda = saved


def _spatial_data(n, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, 10, 128), dtype=np.float32)
    v = np.maximum(rng.standard_normal((n, 10, 7, 7, 512), dtype=np.float32), 0)     # non-negative, like VGG-19 pool5
    y = np.full((n, 10), 28)
    for i, c in enumerate(rng.integers(0, 28, n)):
        s, e = sorted(rng.integers(0, 11, 2)); y[i, s:max(e, s + 1)] = c
    return a, v, y


def official_psp_runner(official_dir, a, v, y, batch_size):
    "A function that runs one epoch of the release's own training step: its model, batch loader, losses, optimiser."
    sys.path.insert(0, str(official_dir))
    with _cuda_is_cpu():
        import fully_model, dataloader, measure, Optim
        torch.manual_seed(0); random.seed(0)
        net = fully_model.psp_net(128, 512, 128, 29)
    opt = Optim.ScheduledOptim(torch.optim.Adam(net.parameters(), lr=1e-3))
    ds = object.__new__(dataloader.AVE_Fully_Dataset)                # its __init__ only reads these from HDF5 files
    ds.batch_size, ds.status = batch_size, 'train'
    ds.audio_features, ds.video_features, ds.labels = a, v, np.eye(29, dtype=np.float32)[y]
    ds.lis = list(range(len(a))); ds.list_copy = ds.lis.copy()
    ds.video_batch = np.zeros([batch_size, 10, 7, 7, 512],
                              np.float32); ds.audio_batch = np.zeros([batch_size, 10, 128], np.float32)
    ds.label_batch = np.zeros([batch_size, 10, 29], np.float32)
    ds.segment_label_batch = np.zeros([batch_size, 10],
                                      np.float32); ds.segment_avps_gt_batch = np.zeros([batch_size, 10], np.float32)

    def epoch():
        with _cuda_is_cpu():
            net.train(); shuffle = True
            for i in range(len(ds) // batch_size):                   # the loop of fully_supervised_main.train
                audio, video, labels, seg_label, avps_gt = ds.get_batch(i, shuffle); shuffle = False
                net.zero_grad()
                fusion, out, cross_att = net(audio, video, 0.099)
                loss = torch.nn.CrossEntropyLoss()(out.permute(0, 2, 1),
                                                   seg_label) + 100 * measure.AVPSLoss(cross_att, avps_gt)
                loss.cpu().data.numpy(); loss.backward(); opt.step_lr()
    return epoch


def project_psp_runner(a, v, y, batch_size, fast):
    "A function that runs one epoch of the official-architecture PSP through run_epoch, recipe 'official'."
    from avbt_tacma.train_heads import recipe_for, run_epoch
    rec = recipe_for('psp_avps', 'official'); rec['batch_size'] = batch_size
    torch.manual_seed(0)
    model = build_head('psp_avps', 128, 512, **rec.pop('head_kw'), fast=fast)
    opt = torch.optim.Adam(model.parameters(), lr=rec['lr'])
    ta, tv, ty = torch.from_numpy(a), torch.from_numpy(v), torch.from_numpy(y)
    if fast: tv = tv.bfloat16()                                        # as train_head stores the training maps
    gen, ep = torch.Generator().manual_seed(0), [0]

    def epoch():
        run_epoch(model, opt, ta, tv, ty, rec, ep[0], gen, rec['lr']); ep[0] += 1
    return epoch


def compare_official_psp(args):
    import os
    a, v, y = _spatial_data(args.n_train)
    print(f"official PSP step vs the project's, {args.n_train} clips x 10 x 7x7x512 (random, non-negative), batch "
          f"{args.batch_size}; epochs interleaved (official, project fp32, project fast), median of {args.epochs} "
          f"rounds after 1 warm-up; load average {os.getloadavg()}")
    for threads in [int(t) for t in args.threads.split(',')]:
        torch.set_num_threads(threads)
        runs = {'official': official_psp_runner(args.official_psp, a, v, y, args.batch_size),
                'fp32': project_psp_runner(a, v, y, args.batch_size, fast=False),
                'fast': project_psp_runner(a, v, y, args.batch_size, fast=True)}
        times = {k: [] for k in runs}
        for r in range(args.epochs + 1):
            for k, f in runs.items():
                t = time.perf_counter(); f(); dt = time.perf_counter() - t
                if r: times[k].append(dt)
        off, ours, fast = (statistics.median(times[k]) for k in runs)
        ratio_fast = statistics.median(o / f for o, f in zip(times['official'], times['fast']))
        rounds = [round(o / f, 2) for o, f in zip(times['official'], times['fast'])]
        print(f"cpu x{threads}: official {off:.2f} s/epoch | project fp32 {ours:.2f} s ({off / ours:.2f}x) | "
              f"project fast {fast:.2f} s ({off / fast:.2f}x; per-round ratios {rounds}, median {ratio_fast:.2f}x)",
              flush=True)
    print(f"load average after: {os.getloadavg()}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--heads', default='tacma,psp')
    p.add_argument('--epochs', type=int, default=3, help='timed epochs (after one warm-up)')
    p.add_argument('--threads', default='1,2', help='CPU thread counts to try')
    p.add_argument('--n-train', type=int, default=3339)
    p.add_argument('--n-eval', type=int, default=402)
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--no-cuda', action='store_true')
    p.add_argument('--official-psp', default=None,
                   help='checkout of PSP_CVPR_2021: time its training step against ours')
    args = p.parse_args()
    if args.official_psp: return compare_official_psp(args)
    print(f"torch {torch.__version__}; {args.n_train} train clips x 10 segments, 512-d, batch {args.batch_size}; "
          f"median of {args.epochs} epochs after 1 warm-up")
    print(f"{'head':<9} {'device':<14} {'params':>9} {'train s/epoch':>14} {'val+test s':>11} {'200 epochs (min)':>17}")
    configs = [('cpu', int(t)) for t in args.threads.split(',')]
    if torch.cuda.is_available() and not args.no_cuda: configs.append(('cuda', None))
    for head in args.heads.split(','):
        for device, threads in configs:
            tr, ev, n = bench(head, device, args.n_train, args.n_eval, args.epochs, args.batch_size, threads)
            name = f"cpu x{threads}" if device == 'cpu' else torch.cuda.get_device_name(0)[:14]
            print(f"{head:<9} {name:<14} {n:>9,} {tr:>14.3f} {ev:>11.3f} {200 * (tr + ev) / 60:>17.1f}", flush=True)


if __name__ == '__main__':
    main()
