"AV-BT: the loss by hand and its invariances, LARS against the official rule, the schedule, the model's shapes, DDP."
import io, math, os, copy
import pytest, torch
from torch import nn
from avbt_tacma.core import AVBTError
from avbt_tacma.avbt import (AVBTConfig, AVBT, AudioGuidedAttention, cross_correlation, avbt_loss, LARS, lr_at,
                             adjust_lr, make_optimizer)

# ---------------------------------------------------------------- loss
def test_loss_by_hand():
    # One clip, T = 3 segments, D = 2 dimensions (rows are time steps).
    #   audio dim 0: 1, 2, 3 -> centred -1, 0, 1 (length sqrt 2);  audio dim 1: 0, 1, 5 -> -2, -1, 3 (length sqrt 14)
    #   visual dim 0: 3, 2, 1 -> 1, 0, -1 (length sqrt 2);         visual dim 1: 1, 1, 4 -> -1, -1, 2 (length sqrt 6)
    #   C00 = (-1 - 1) / 2 = -1              C01 = (1 + 2) / sqrt(12) = 0.866025
    #   C10 = (-2 - 3) / sqrt(28) = -0.944911 C11 = (2 + 1 + 6) / sqrt(84) = 0.981981
    #   L = (1 - (-1))^2 + (1 - 0.981981)^2 + 0.005 * (0.75 + 25/28) = 4 + 0.000324689 + 0.008214286 = 4.008538975
    z_a = torch.tensor([[[1., 0.], [2., 1.], [3., 5.]]])
    z_v = torch.tensor([[[3., 1.], [2., 1.], [1., 4.]]])
    c = cross_correlation(z_a, z_v, eps=0.0)
    torch.testing.assert_close(c, torch.tensor([[[-1.0, 0.866025], [-0.944911, 0.981981]]]), atol=1e-6, rtol=0)
    assert avbt_loss(z_a, z_v, lambd=5e-3, eps=0.0).item() == pytest.approx(4.008538975, abs=1e-6)
    loss, terms = avbt_loss(z_a, z_v, eps=0.0, return_terms=True)
    assert terms['on_diag'].item() == pytest.approx(4.000324689, abs=1e-6)
    assert terms['off_diag'].item() == pytest.approx(0.75 + 25 / 28, abs=1e-6)

def test_loss_averages_c_over_clips_not_losses():
    # two clips whose C are +I and -I (D = 1): the average C is 0, so the loss is (1 - 0)^2 = 1, not the mean of 0 and 4
    t = torch.tensor([1., 2., 3.]).view(1, 3, 1)
    z_a = torch.cat([t, t]); z_v = torch.cat([t, -t])
    assert avbt_loss(z_a, z_v, eps=0.0).item() == pytest.approx(1.0, abs=1e-6)

def test_invariant_to_per_dimension_affine_maps_along_time():
    torch.manual_seed(0)
    z_a, z_v = torch.randn(3, 10, 8), torch.randn(3, 10, 8)
    s_a, b_a = torch.rand(3, 1, 8) * 4 + 0.25, torch.randn(3, 1, 8) * 5     # per clip, per dimension
    s_v, b_v = torch.rand(3, 1, 8) * 4 + 0.25, torch.randn(3, 1, 8) * 5
    torch.testing.assert_close(avbt_loss(z_a * s_a + b_a, z_v * s_v + b_v), avbt_loss(z_a, z_v), atol=1e-5, rtol=1e-5)
    # a negative scale flips the sign of that dimension's correlations
    flip = torch.ones(1, 1, 8); flip[..., 2] = -1
    torch.testing.assert_close(cross_correlation(z_a * flip, z_v)[:, 2], -cross_correlation(z_a, z_v)[:, 2],
                               atol=1e-6, rtol=0)

def test_identical_inputs_give_unit_diagonal_and_bounded_entries():
    torch.manual_seed(1)
    z = torch.randn(4, 10, 16)
    c = cross_correlation(z, z)
    torch.testing.assert_close(torch.diagonal(c, dim1=1, dim2=2), torch.ones(4, 16), atol=1e-5, rtol=0)
    assert c.abs().max() <= 1 + 1e-5
    _, terms = avbt_loss(z, z, return_terms=True)
    assert terms['on_diag'].item() < 1e-8

def test_constant_dimension_gives_no_nan():
    torch.manual_seed(2)
    z_a = torch.randn(2, 10, 4); z_a[:, :, 1] = 3.0           # constant over time
    z_v = torch.randn(2, 10, 4); z_v[0, :, 3] = 0.0
    z_a.requires_grad_(); z_v.requires_grad_()
    loss = avbt_loss(z_a, z_v)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z_a.grad).all() and torch.isfinite(z_v.grad).all()
    c = cross_correlation(z_a.detach(), z_v.detach())
    assert c[:, 1].abs().max() == 0 and c[0, :, 3].abs().max() == 0

def test_loss_is_float32_under_bf16_inputs_and_autocast():
    torch.manual_seed(3)
    z_a, z_v = torch.randn(2, 10, 8).bfloat16(), torch.randn(2, 10, 8).bfloat16()
    assert cross_correlation(z_a, z_v).dtype == torch.float32
    x, y = torch.randn(2, 10, 8), torch.randn(2, 10, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):                      # autocast would run the matmul in bf16
        c = cross_correlation(x, y)
    assert c.dtype == torch.float32 and torch.equal(c, cross_correlation(x, y))
    with pytest.raises(AVBTError, match=r'must both be \[B, T, D\]'): cross_correlation(torch.zeros(2, 10, 8),
        torch.zeros(2, 10, 4))

def _ddp_worker(rank, world, init, za, zv, out):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=init, rank=rank, world_size=world)
    idx = [slice(0, 3), slice(3, 4)][rank]                   # unequal shares: 3 clips and 1 clip
    a, v = za[idx].clone().requires_grad_(), zv[idx].clone().requires_grad_()
    loss = avbt_loss(a, v, distributed=True)
    loss.backward()
    torch.save({'loss': loss.detach(), 'ga': a.grad, 'gv': v.grad}, f'{out}/rank{rank}.pt')
    dist.barrier()                      # both ranks done before teardown: gloo aborts a rank whose peer has gone
    dist.destroy_process_group()
    os._exit(0)   # skip interpreter teardown: under load gloo's threads there can abort a finished rank

def test_distributed_loss_equals_single_process_loss(tmp_path):
    import torch.multiprocessing as mp
    torch.manual_seed(4)
    za, zv = torch.randn(4, 10, 6), torch.randn(4, 10, 6)
    mp.spawn(_ddp_worker, args=(2, f'file://{tmp_path}/init', za, zv, str(tmp_path)), nprocs=2, join=True)
    a, v = za.clone().requires_grad_(), zv.clone().requires_grad_()
    loss = avbt_loss(a, v); loss.backward()
    r = [torch.load(tmp_path / f'rank{i}.pt') for i in range(2)]
    for i in range(2): assert r[i]['loss'].item() == pytest.approx(loss.item(), abs=1e-6)
    # each rank's gradient is world_size x its share of the global gradient; DDP's averaging divides it back
    torch.testing.assert_close(torch.cat([r[0]['ga'], r[1]['ga']]) / 2, a.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(torch.cat([r[0]['gv'], r[1]['gv']]) / 2, v.grad, atol=1e-6, rtol=1e-5)
    assert avbt_loss(za, zv, distributed=True).item() == pytest.approx(loss.item())   # no process group: plain loss

# ---------------------------------------------------------------- LARS
def reference_lars(w, b, grads, lr, wd, momentum, eta):
    "The official Barlow Twins rule, re-derived with plain Python floats (w: 2-D list, b: 1-D list)."
    w = [row[:] for row in w]; b = b[:]
    mu_w = [[0.0] * len(w[0]) for _ in w]; mu_b = [0.0] * len(b)
    for gw, gb in grads:
        dw = [[gw[i][j] + wd * w[i][j] for j in range(len(w[0]))] for i in range(len(w))]   # decay: 2-D only
        wn = math.sqrt(sum(x * x for r in w for x in r)); dn = math.sqrt(sum(x * x for r in dw for x in r))
        q = eta * wn / dn if wn > 0 and dn > 0 else 1.0                                      # trust ratio: 2-D only
        for i in range(len(w)):
            for j in range(len(w[0])):
                mu_w[i][j] = momentum * mu_w[i][j] + q * dw[i][j]; w[i][j] -= lr * mu_w[i][j]
        for k in range(len(b)):
            mu_b[k] = momentum * mu_b[k] + gb[k]; b[k] -= lr * mu_b[k]
    return w, b

def test_lars_matches_the_official_rule_over_several_steps():
    torch.manual_seed(5)
    w0, b0 = torch.randn(3, 4), torch.randn(4)
    grads = [(torch.randn(3, 4) * 10 ** -s, torch.randn(4)) for s in range(4)] + [(torch.zeros(3, 4), torch.zeros(4))]
    lr, wd, mom, eta = 0.7, 0.05, 0.9, 0.01
    w, b = nn.Parameter(w0.clone().double()), nn.Parameter(b0.clone().double())
    opt = LARS([{'params': [w]}, {'params': [b]}], lr=lr, weight_decay=wd, momentum=mom, eta=eta)
    for gw, gb in grads:
        w.grad, b.grad = gw.double(), gb.double(); opt.step()
    rw, rb = reference_lars(w0.tolist(), b0.tolist(), [(gw.tolist(), gb.tolist()) for gw, gb in grads], lr, wd, mom,
                            eta)
    torch.testing.assert_close(w.detach(), torch.tensor(rw, dtype=torch.float64), atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(b.detach(), torch.tensor(rb, dtype=torch.float64), atol=1e-12, rtol=1e-10)

def test_lars_trust_ratio_edge_cases_and_filters():
    # zero weight: ratio 1 (plain momentum SGD on the decayed gradient); zero gradient and no decay: nothing moves
    w = nn.Parameter(torch.zeros(2, 2)); z = nn.Parameter(torch.ones(2, 2))
    opt = LARS([w, z], lr=0.5, weight_decay=0.0)
    w.grad = torch.ones(2, 2); z.grad = torch.zeros(2, 2); opt.step()
    torch.testing.assert_close(w.detach(),
                               torch.full((2, 2), -0.5)); torch.testing.assert_close(z.detach(), torch.ones(2, 2))
    # with the filters off, a 1-D parameter is decayed and adapted like a matrix
    b = nn.Parameter(torch.tensor([3., 4.]))
    opt = LARS([b], lr=1.0, weight_decay=0.0, eta=0.1, weight_decay_filter=False, lars_adaptation_filter=False)
    b.grad = torch.tensor([0., 10.]); opt.step()
    torch.testing.assert_close(b.detach(), torch.tensor([3., 4. - 0.5]))   # ratio 0.1 * 5 / 10 = 0.05 -> step 0.5
    # a callable filter decides per parameter
    m = nn.Parameter(torch.tensor([[3., 4.]]))
    opt = LARS([m], lr=1.0, weight_decay=0.0, lars_adaptation_filter=lambda p: True)
    m.grad = torch.tensor([[1., 0.]]); opt.step()
    torch.testing.assert_close(m.detach(), torch.tensor([[2., 4.]]))

def test_lars_state_resumes_through_weights_only_load():
    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    groups = lambda m: [{'params': [p for p in m.parameters() if p.ndim > 1]},
                        {'params': [p for p in m.parameters() if p.ndim == 1]}]
    x = torch.randn(8, 4)
    def step(m, o): o.zero_grad(); m(x).pow(2).sum().backward(); o.step()
    opt = LARS(groups(net), lr=0.3)
    for _ in range(2): step(net, opt)
    buf = io.BytesIO(); torch.save({'model': net.state_dict(), 'opt': opt.state_dict()}, buf)
    for _ in range(2): step(net, opt)
    buf.seek(0); ck = torch.load(buf, weights_only=True)
    net2 = copy.deepcopy(net); net2.load_state_dict(ck['model'])
    opt2 = LARS(groups(net2), lr=0.3); opt2.load_state_dict(ck['opt'])
    for _ in range(2): step(net2, opt2)
    for p, q in zip(net.parameters(), net2.parameters()): torch.testing.assert_close(p, q, atol=0, rtol=0)

# ---------------------------------------------------------------- schedule
def test_lr_schedule_points():
    assert lr_at(0, 1000, 100, 2.0) == 0.0
    assert lr_at(50, 1000, 100, 2.0) == pytest.approx(1.0)
    assert lr_at(100, 1000, 100, 2.0) == pytest.approx(2.0)                  # end of warm-up: the base rate
    assert lr_at(550, 1000, 100, 2.0) == pytest.approx(2.0 * 0.55)           # half-way down the cosine: (1 + 0.1) / 2
    assert lr_at(1000, 1000, 100, 2.0) == pytest.approx(0.2)                 # the end: base / 10
    assert lr_at(1200, 1000, 100, 2.0) == pytest.approx(0.2)                 # stays there
    assert lr_at(1000, 1000, 100, 2.0, final_factor=0.001) == pytest.approx(0.002)
    lrs = [lr_at(s, 1000, 100, 1.0) for s in range(1001)]
    assert all(a <= b for a, b in zip(lrs[:100], lrs[1:101])) and all(a >= b for a, b in zip(lrs[100:], lrs[101:]))

def test_adjust_lr_uses_both_bases_batch_and_factor():
    cfg = AVBTConfig()
    opt = LARS([{'params': [nn.Parameter(torch.ones(2, 2))]}, {'params': [nn.Parameter(torch.ones(2))]}], lr=0.0)
    lw, lb = adjust_lr(opt, 100, 1000, 100, cfg, batch_size=128)
    assert lw == pytest.approx(0.2 * 128 / 256 * 2e-4) and lb == pytest.approx(0.0048 * 128 / 256 * 2e-4)
    assert [g['lr'] for g in opt.param_groups] == [lw, lb]
    assert adjust_lr(opt, 1000, 1000, 100, cfg)[0] == pytest.approx(0.2 * 0.5 * 2e-4 * 0.1)  # default batch: cfg's 128

# ---------------------------------------------------------------- model
def tiny(**kw):
    return AVBTConfig.preset('synthetic', **{'small_channels': (8, 16), 'd_l': 16, 'proj_dims': (32, 32, 24), **kw})

def inputs(B=2, T=10, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, 1, 96, 64, generator=g), torch.randn(B, T, 3, size, size, generator=g)

def test_synthetic_preset_shapes():
    cfg = AVBTConfig.preset('synthetic')
    net = AVBT(cfg)
    la, fr = inputs(2, 10, cfg.image_size)
    f_a, f_v, sp = net.encode(la, fr, return_spatial=True)
    assert f_a.shape == f_v.shape == (2, 10, 128) and sp.shape == (2, 10, 4, 4, 128)
    z_a, z_v = net(la, fr)
    assert z_a.shape == z_v.shape == (2, 10, 256)
    with pytest.raises(AVBTError, match=r'disagree on \[B, T\]'): net.encode(la, fr[:, :5])

def test_separate_projectors_add_exactly_one_projector():
    shared, separate = AVBT(tiny()), AVBT(tiny(shared_projector=False))
    n = lambda m: sum(p.numel() for p in m.parameters())
    proj = 16 * 32 + 2 * 32 + 32 * 32 + 2 * 32 + 32 * 24          # Linear (no bias) + BN (weight, bias), ..., Linear
    assert n(shared.projector) == proj and n(separate) - n(shared) == proj
    la, fr = inputs()
    z_a, z_v = separate(la, fr)
    assert z_a.shape == z_v.shape == (2, 10, 24)
    # with one projector, equal features give equal projections; separate projectors do not
    f = torch.randn(2, 10, 16)
    a, v = shared.project(f, f); assert torch.equal(a, v)
    a, v = separate.project(f, f); assert not torch.allclose(a, v)

def test_agva_shapes_and_attention():
    torch.manual_seed(7)
    net = AVBT(tiny(agva=True, agva_hidden=8, agva_att=5))
    la, fr = inputs()
    f_a, f_v, sp = net.encode(la, fr, return_spatial=True)
    assert f_v.shape == (2, 10, 16) and sp.shape == (2, 10, 16, 16, 16)   # two stride-2 layers: 64 -> 16
    assert isinstance(net.agva, AudioGuidedAttention)
    z_a, z_v = net(la, fr)
    avbt_loss(z_a, z_v).backward()
    assert net.agva.a_in.weight.grad.abs().sum() > 0       # the audio guides the visual stream: gradients reach it
    ctx, alpha = net.agva(torch.randn(3, 16), torch.randn(3, 16, 16))
    torch.testing.assert_close(alpha.sum(-1), torch.ones(3))
    # the attention output is a convex combination of the locations
    v = torch.randn(3, 16, 16)
    ctx, alpha = net.agva(torch.randn(3, 16), v)
    torch.testing.assert_close(ctx, (alpha.unsqueeze(-1) * v).sum(1))

def test_param_groups_and_freezing():
    net = AVBT(tiny())
    w, b = net.param_groups()
    assert all(p.ndim >= 2 for p in w['params']) and all(p.ndim == 1 for p in b['params'])
    assert len(w['params']) + len(b['params']) == len(list(net.parameters()))
    frozen = AVBT(tiny(freeze_backbone=True)).train()
    trainable = {id(p) for g in frozen.param_groups() for p in g['params']}
    assert not any(id(p) in trainable for p in frozen.audio_cnn.parameters())
    assert not frozen.visual_cnn.training and frozen.audio_lstm.training

def test_deterministic_on_cpu():
    def run():
        torch.manual_seed(123)
        net = AVBT(tiny()); opt = make_optimizer(net); adjust_lr(opt, 3, 10, 2, net.cfg, 2)
        la, fr = inputs(seed=1)
        losses = []
        for _ in range(2):
            opt.zero_grad(); loss = avbt_loss(*net(la, fr)); loss.backward(); opt.step(); losses.append(loss.item())
        return losses, [p.detach().clone() for p in net.parameters()]
    (l1, p1), (l2, p2) = run(), run()
    assert l1 == l2 and all(torch.equal(a, b) for a, b in zip(p1, p2))

def test_training_step_lowers_the_loss():
    torch.manual_seed(8)
    net = AVBT(tiny(lr_factor=20.0)); opt = make_optimizer(net)
    la, fr = inputs(B=4, seed=2)
    losses = []
    for s in range(8):
        adjust_lr(opt, 2, 10, 1, net.cfg, 4)
        opt.zero_grad(); loss = avbt_loss(*net(la, fr)); loss.backward(); opt.step(); losses.append(loss.item())
    assert losses[-1] < losses[0]

def test_paper_architecture_builds_offline():
    torch.manual_seed(9)
    net = AVBT(AVBTConfig.preset('paper', weights='none')).eval()
    assert net.visual_cnn.out_dim == 2048 and net.audio_cnn.out_dim == 128
    assert net.audio_lstm.hidden_size == 256 and net.audio_lstm.bidirectional
    la, fr = torch.randn(1, 2, 1, 96, 64), torch.randn(1, 2, 3, 224, 224)
    with torch.no_grad():
        f_a, f_v, sp = net.encode(la, fr, return_spatial=True)
        z_a, z_v = net.project(f_a, f_v)
    assert f_a.shape == f_v.shape == (1, 2, 512) and sp.shape == (1, 2, 7, 7, 2048) and z_a.shape == (1, 2, 4096)

def test_config_round_trip_and_errors():
    cfg = AVBTConfig.preset('synthetic', agva=True)
    import json
    assert AVBTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(AVBTError, match='unknown AV-BT preset'): AVBTConfig.preset('huge')
    with pytest.raises(AVBTError, match='d_l must be even'): AVBT(tiny(d_l=15))
