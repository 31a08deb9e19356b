"""DDP on the CPU (gloo, 2 processes) computes what one process computes on the same global batch.

Why this can hold exactly: `avbt_loss` all-reduces the per-video correlation sums (so every rank holds the loss of the
global batch), and `sync_batchnorm` makes every BatchNorm normalise by the statistics of the global batch
(`GlobalBatchNorm` on gloo, since `nn.SyncBatchNorm` refuses CPU tensors). Both all-reduces are differentiable; their
backward passes sum the gradients over the ranks, which DDP's averaging then divides by the world size. So the
gradient of each rank's DDP model equals the single-process gradient on the whole batch, up to float summation order.
Without the BatchNorm conversion each rank would normalise by its own half of the batch, and the gradients differ:
the last test checks that this control really fails, so the equality is not an accident of the setup.
"""
import os, socket, dataclasses, tempfile
from pathlib import Path
import pytest, torch
import torch.distributed as dist
import torch.multiprocessing as mp
from avbt_tacma.datasets import MemoryCache
from avbt_tacma.avbt import AVBTConfig, AVBT, avbt_loss
from avbt_tacma.train_avbt import sync_batchnorm, train_avbt, GlobalBatchNorm
from avbt_tacma.core import load_checkpoint, set_seed

WORLD, B = 2, 4

def tiny_cfg(**kw):
    "The synthetic preset (small conv backbones with BatchNorm, Bi-LSTMs, BatchNorm projector), made smaller still."
    return AVBTConfig.preset('synthetic', small_channels=(8, 8, 16, 16), d_l=16, proj_dims=(32, 32, 32),
                             image_size=32, **kw)

def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = tiny_cfg()
    return torch.randn(B, 10, 1, 96, 64,
                       generator=g), torch.randn(B, 10, 3, cfg.image_size, cfg.image_size, generator=g)

def grads_of(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _env(rank, port):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))

def _grad_worker(rank, port, out):
    "One rank: gradients of its half of the batch through DDP, with and (control) without the BatchNorm conversion."
    _env(rank, port); torch.set_num_threads(1)
    dist.init_process_group('gloo')
    res = {}
    for convert in (True, False):
        set_seed(0); model = AVBT(tiny_cfg()).train()
        if convert: model = sync_batchnorm(model, torch.device('cpu'))
        net = torch.nn.parallel.DistributedDataParallel(model)
        logmel, frames = batch()
        half = slice(rank * B // WORLD, (rank + 1) * B // WORLD)
        z_a, z_v = net(logmel[half], frames[half])
        loss = avbt_loss(z_a, z_v, tiny_cfg().lambd, distributed=True)
        loss.backward()
        res[convert] = {'loss': loss.detach(), 'grads': grads_of(model)}
    torch.save(res, Path(out) / f'rank{rank}.pt')
    dist.barrier()                      # both ranks done before teardown: gloo aborts a rank whose peer has gone
    dist.destroy_process_group()
    os._exit(0)   # skip interpreter teardown: under load gloo's threads there can abort a finished rank

def single_process():
    set_seed(0); model = AVBT(tiny_cfg()).train()
    logmel, frames = batch()
    z_a, z_v = model(logmel, frames)
    loss = avbt_loss(z_a, z_v, tiny_cfg().lambd); loss.backward()
    return loss.detach(), grads_of(model)

@pytest.fixture(scope='module')
def ddp_grads():
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_grad_worker, args=(free_port(), d), nprocs=WORLD, join=True)
        return [torch.load(Path(d) / f'rank{r}.pt') for r in range(WORLD)]

def rel_diff(g1, g2):
    "Largest difference between two sets of tensors, relative to each tensor's largest magnitude (float32: ~1e-6)."
    assert g1.keys() == g2.keys()
    return max(float((g1[k].float() - g2[k].float()).abs().max() / g2[k].float().abs().max().clamp_min(1)) for k in g1)

def test_model_has_batchnorm():
    "The equivalence below is only interesting because the backbones and the projector normalise over the batch."
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in AVBT(tiny_cfg()).projector.modules())

def test_ddp_loss_and_gradients_equal_single_process(ddp_grads):
    loss1, g1 = single_process()
    for r in ddp_grads:
        torch.testing.assert_close(r[True]['loss'], loss1, atol=1e-5, rtol=1e-5)   # every rank holds the global loss
        assert rel_diff(r[True]['grads'], g1) < 1e-5, rel_diff(r[True]['grads'], g1)
    assert max(float(g.abs().max()) for g in g1.values()) > 1e-3                  # the gradients are not trivially zero

def test_ddp_without_global_batchnorm_differs(ddp_grads):
    "Control: per-rank BatchNorm statistics give another loss and other gradients, so the test above can fail."
    loss1, g1 = single_process()
    r = ddp_grads[0][False]
    assert abs(float(r['loss'] - loss1)) > 1e-3 and rel_diff(r['grads'], g1) > 1e-3

def _train_worker(rank, port, out):
    _env(rank, port); torch.set_num_threads(1)
    cache = MemoryCache.synthetic(n=B + 2, hw=40, seed=1, splits={'train': range(B), 'val': [B], 'test': [B + 1]})
    train_avbt(cache, out, tiny_cfg(epochs=2, batch_size=B, warmup_epochs=1), seed=0, device='cpu', workers=0,
               progress=False)
    dist.barrier()
    dist.destroy_process_group()
    os._exit(0)   # skip interpreter teardown: under load gloo's threads there can abort a finished rank

def test_ddp_training_matches_single_process():
    "Two epochs of one global batch each: `train-avbt` under 2 gloo processes ends with the single-process weights."
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        mp.spawn(_train_worker, args=(free_port(), str(d / 'ddp')), nprocs=WORLD, join=True)
        cache = MemoryCache.synthetic(n=B + 2, hw=40, seed=1, splits={'train': range(B), 'val': [B], 'test': [B + 1]})
        train_avbt(cache, d / 'one', tiny_cfg(epochs=2, batch_size=B, warmup_epochs=1), seed=0, device='cpu',
                   workers=0, progress=False)
        a, b = (load_checkpoint(d / r / 'avbt.pt', kind='avbt') for r in ('ddp', 'one'))
        assert a['config']['model'] == b['config']['model'] and a['step'] == b['step'] == 2
        assert rel_diff(a['model'],
                        b['model']) < 1e-5, {k: rel_diff({k: a['model'][k]}, {k: b['model'][k]}) for k in a['model']}
        assert rel_diff(b['model'], load_checkpoint(d / 'one' / 'checkpoint.pt')['model']) == 0
        assert load_checkpoint(d / 'ddp' / 'checkpoint.pt')['world_size'] == WORLD
