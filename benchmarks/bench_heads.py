"""Time per training epoch of the heads on features of the real AVE's size.

3339 training clips x 10 segments, 512-d audio and visual features (random numbers: the speed does not depend on the
values), batch 128, the heads' default widths, Adam. Prints the median over a few epochs (after one warm-up epoch)
of (a) the training pass and (b) the evaluation of the 402 val + 402 test clips that train_head does every epoch,
and what 200 epochs would take. On the CPU for each requested thread count; on CUDA too when present.

    python benchmarks/bench_heads.py                       # tacma and psp, CPU (1 and 2 threads) [+ CUDA]
    python benchmarks/bench_heads.py --heads tacma,psp,cma,probe_av --epochs 5
    python benchmarks/bench_heads.py --heads avel          # spatial 7x7x512 input: ~3.3 GB of features in memory
"""
import argparse, statistics, time
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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--heads', default='tacma,psp')
    p.add_argument('--epochs', type=int, default=3, help='timed epochs (after one warm-up)')
    p.add_argument('--threads', default='1,2', help='CPU thread counts to try')
    p.add_argument('--n-train', type=int, default=3339)
    p.add_argument('--n-eval', type=int, default=402)
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--no-cuda', action='store_true')
    args = p.parse_args()
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
