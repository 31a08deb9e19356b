"""TACMA (Eq. 3-8) and the baselines' building blocks: hand-computed values and an independent reference."""
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from avbt_tacma.core import AVBTError
from avbt_tacma.tacma import temporal_weights, TACMA, MLP3
from avbt_tacma.baselines import psp_weights, avps_loss, avps_target, PSP, AVEL, Probe, plain_attention


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- Eq. 4 by hand ----
def test_temporal_weights_3x3_by_hand():
    # theta = 0.5; W_ij = exp(-theta |i-j| / M_ij):
    #   row 0: [1, exp(-0.5*1/0.3) = exp(-5/3), exp(-0.5*2/0.2) = exp(-5)]
    #   row 1: [exp(-0.5/0.25) = exp(-2), 1, exp(-0.5/0.25) = exp(-2)]
    #   row 2: [exp(-1/0.1) = exp(-10), exp(-0.5/0.4) = exp(-1.25), 1]
    M = torch.tensor([[0.5, 0.3, 0.2], [0.25, 0.5, 0.25], [0.1, 0.4, 0.5]], dtype=torch.float64)
    want = torch.tensor([[1, math.exp(-5 / 3), math.exp(-5)],
                         [math.exp(-2), 1, math.exp(-2)],
                         [math.exp(-10), math.exp(-1.25), 1]], dtype=torch.float64)
    assert torch.allclose(temporal_weights(M, 0.5), want, rtol=0, atol=1e-15)
    # batched and float32: the same numbers per matrix
    Mb = torch.stack([M, M.flip(0)]).float()
    assert torch.allclose(temporal_weights(Mb, 0.5)[0], want.float(), atol=1e-7)
    assert temporal_weights(Mb, 0.5).shape == (2, 3, 3)


def test_temporal_weights_theta0_and_eps_guard():
    M = torch.rand(4, 10, 10)
    assert torch.equal(temporal_weights(M, 0.0), torch.ones(4, 10, 10))
    Z = torch.zeros(1, 3, 3, requires_grad=True)          # a zero score: no 0/0 on the diagonal, 0 weight elsewhere
    W = temporal_weights(Z, 0.03)
    assert torch.equal(W[0].diagonal(), torch.ones(3)) and W[0, 0, 1] == 0
    (W * Z).sum().backward()
    assert torch.isfinite(Z.grad).all()
    # clamped at eps: exp(-theta / eps) for a neighbour
    assert torch.allclose(temporal_weights(torch.full((2, 2), 1e-9), 1e-6, eps=1e-6)[0, 1],
                          torch.tensor(math.exp(-1.0)))


# ---- theta = 0 is plain attention, exactly ----
def _plain_attention(m, a, v):
    "Standard cross-modal attention with TACMA's parameters, written out without TACMA.forward or temporal_weights."
    fa, fv = m.in_a(a), m.in_v(v)
    S = F.linear(fa, m.Wa1.weight) @ F.linear(fv, m.Wv1.weight).transpose(1, 2) / math.sqrt(m.d_l)
    P_av, P_va = torch.softmax(torch.relu(S), -1), torch.softmax(torch.relu(S.transpose(1, 2)), -1)
    va = m.ln_v(F.linear(P_av @ F.linear(fv, m.Wv2.weight) + fa, m.Wv3.weight, m.Wv3.bias))
    av = m.ln_a(F.linear(P_va @ F.linear(fa, m.Wa2.weight) + fv, m.Wa3.weight, m.Wa3.bias))
    return m.classifier(va + av)


@pytest.mark.parametrize('d_a,d_v', [(64, 64), (32, 48)])
def test_theta0_equals_plain_attention_exactly(d_a, d_v):
    torch.manual_seed(1)
    m = TACMA(d_a, d_v, d_l=64, d_h=32, d_e=32).eval()
    m.theta = 0.0
    a, v = torch.randn(5, 10, d_a), torch.randn(5, 10, d_v)
    with torch.no_grad():
        assert torch.equal(m(a, v), _plain_attention(m, a, v))
        logits, att = m(a, v, return_attn=True)
        assert torch.equal(att['W_av'], att['M_av']) and torch.equal(att['W_va'], att['M_va'])
        cma = plain_attention(d_a, d_v, d_l=64, d_h=32, d_e=32).eval(); cma.load_state_dict(m.state_dict())
        assert torch.equal(cma(a, v), logits)
        m.theta = 0.03
        assert not torch.allclose(m(a, v), _plain_attention(m, a, v))


# ---- TACMA against an independent float64 loop implementation (theta > 0, both readings of Eq. 6) ----
def _reference_tacma(m, a, v, theta, eq6):
    W = {k: t.detach().double().numpy() for k, t in m.state_dict().items()}
    a, v = a.double().numpy(), v.double().numpy()
    B, T, d_l = a.shape
    out = np.zeros((B, T, 29))
    def ln(x, g, b): return (x - x.mean()) / np.sqrt(x.var() + 1e-5) * g + b
    def softmax(x): e = np.exp(x - x.max()); return e / e.sum()
    for n in range(B):
        q, k = a[n] @ W['Wa1.weight'].T, v[n] @ W['Wv1.weight'].T
        S = np.array([[q[i] @ k[j] for j in range(T)] for i in range(T)]) / math.sqrt(d_l)
        M_av = np.array([softmax(np.maximum(S[i], 0)) for i in range(T)])
        M_va = np.array([softmax(np.maximum(S[:, j], 0)) for j in range(T)])
        Wav = np.array([[math.exp(-theta * abs(i - j) / M_av[i, j]) * M_av[i, j] for j in range(T)] for i in range(T)])
        Wva = np.array([[math.exp(-theta * abs(i - j) / M_va[i, j]) * M_va[i, j] for j in range(T)] for i in range(T)])
        vv, aa = v[n] @ W['Wv2.weight'].T, a[n] @ W['Wa2.weight'].T
        Gv, Ga = (Wav, Wva) if eq6 == 'consistent' else (Wva, Wav)
        for t in range(T):
            V_fuse = sum(Gv[t, j] * vv[j] for j in range(T)) + a[n, t]
            A_fuse = sum(Ga[t, j] * aa[j] for j in range(T)) + v[n, t]
            f = ln(V_fuse @ W['Wv3.weight'].T + W['Wv3.bias'], W['ln_v.weight'], W['ln_v.bias']) \
                + ln(A_fuse @ W['Wa3.weight'].T + W['Wa3.bias'], W['ln_a.weight'], W['ln_a.bias'])
            h = np.maximum(f @ W['classifier.0.weight'].T + W['classifier.0.bias'], 0)
            h = np.maximum(h @ W['classifier.3.weight'].T + W['classifier.3.bias'], 0)
            out[n, t] = h @ W['classifier.6.weight'].T + W['classifier.6.bias']
    return out


@pytest.mark.parametrize('eq6', ['consistent', 'printed'])
def test_tacma_matches_independent_reference(eq6):
    torch.manual_seed(2)
    m = TACMA(16, 16, d_l=16, d_h=8, d_e=8, mlp=(12, 10), theta=0.3, eq6=eq6).eval()
    a, v = 3 * torch.randn(2, 10, 16), 3 * torch.randn(2, 10, 16)     # large scores: far from uniform attention
    with torch.no_grad(): got = m(a, v).double().numpy()
    np.testing.assert_allclose(got, _reference_tacma(m, a, v, 0.3, eq6), rtol=1e-4, atol=1e-5)


def test_eq6_readings_differ():
    torch.manual_seed(3)
    c = TACMA(16, 16, d_l=16, d_h=16, d_e=8).eval()
    p = TACMA(16, 16, d_l=16, d_h=16, d_e=8, eq6='printed').eval(); p.load_state_dict(c.state_dict())
    a, v = torch.randn(3, 10, 16), torch.randn(3, 10, 16)
    with torch.no_grad():
        _, att = c(a, v, return_attn=True)
        assert not torch.allclose(att['W_va'], att['W_av'].transpose(1, 2))    # W not symmetric in this sense
        assert (c(a, v) - p(a, v)).abs().max() > 1e-3
        assert torch.allclose(c(a[:, :1], v[:, :1]), p(a[:, :1], v[:, :1]), atol=1e-6)   # T = 1: the same
    with pytest.raises(ValueError): TACMA(4, 4, eq6='other')
    with pytest.raises(ValueError): TACMA(4, 4, theta=-0.1)


# ---- shapes and gradients of every head ----
@pytest.mark.parametrize('make,spatial', [
    (lambda: TACMA(20, 24, d_l=16, d_h=8, d_e=8), False),
    (lambda: PSP(20, 24, d_hidden=8, d_psp=16, avps=True, spatial=False), False),   # pooled: no region attention
    (lambda: PSP(20, 24, d_hidden=8, d_psp=16, lstm=False, spatial=False), False),
    (lambda: PSP(20, 24, d_hidden=8, d_psp=16, avps=True, k=9), True),                # the official model on 3 x 3
    (lambda: AVEL(20, 24, d_att=16, k=9, d_hidden=8), True),     # k = the 3 x 3 regions (official axis)
    (lambda: AVEL(20, 24, d_att=16, k=9, d_hidden=8, fusion='concat'), True),
    (lambda: AVEL(20, 24, d_att=16, k=8, d_hidden=8, axis='paper'), True),
    (lambda: Probe(20, 24, 'av'), False), (lambda: Probe(20, 24, 'a'), False), (lambda: Probe(20, 24, 'v'), False)])
def test_shapes_and_gradients(make, spatial):
    torch.manual_seed(0)
    m = make().train()
    a = torch.randn(4, 10, 20)
    v = torch.randn(4, 10, 3, 3, 24) if spatial else torch.randn(4, 10, 24)
    y = torch.randint(0, 29, (4, 10)); y[0] = 28
    loss, logits = m.training_loss(a, v, y)
    assert logits.shape == (4, 10, 29) and loss.ndim == 0
    loss.backward()
    used = [p for p in m.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in used)
    assert sum(p.grad.abs().sum() > 0 for p in used) == len(used)


def test_avel_refuses_vectors():
    with pytest.raises(AVBTError, match='needs spatial'):
        AVEL(8, 8)(torch.randn(2, 10, 8), torch.randn(2, 10, 8))


# ---- PSP ----
def test_psp_threshold_by_hand():
    # rows: [1, 2, 3, 4] / 10 = [.1, .2, .3, .4]; tau = 0.25 keeps .3, .4 -> [0, 0, 3/7, 4/7]
    #       [5, 5, 0, 0] / 10 = [.5, .5, 0, 0]; tau = 0.25 keeps both -> unchanged
    S = torch.tensor([[[1., 2., 3., 4.], [5., 5., 0., 0.]]])
    want = torch.tensor([[[0, 0, 3 / 7, 4 / 7], [.5, .5, 0, 0]]])
    assert torch.allclose(psp_weights(S, 0.25), want, atol=1e-6)
    A = psp_weights(torch.rand(8, 10, 10), 0.099)
    assert ((A == 0) | (A > 0.099)).all() and (A == 0).any()
    R = torch.rand(8, 10, 10); Rn = R / R.sum(-1, keepdim=True)
    assert torch.equal(psp_weights(R, 0.099) == 0, Rn <= 0.099)     # exactly the weak pairs are zeroed


def test_avps_loss_by_hand():
    y = torch.tensor([[28, 5, 5, 5], [28, 28, 28, 28]])
    # an all-background video: uniform 1/T as the official code (default), or 0 with all_bg='zero'
    assert torch.allclose(avps_target(y), torch.tensor([[0, 1 / 3, 1 / 3, 1 / 3], [.25, .25, .25, .25]]))
    assert torch.allclose(avps_target(y, all_bg='zero'), torch.tensor([[0, 1 / 3, 1 / 3, 1 / 3], [0, 0, 0, 0]]))
    sim = torch.tensor([[0.5, 0.5, -1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    # video 1: relu -> [.5,.5,0,0] / 1 = [.5,.5,0,0] vs [0,1/3,1/3,1/3]: squared errors .25 + 1/36 + 1/9 + 1/9
    # video 2: [.25]*4 vs the uniform target: 0; vs 0 ('zero'): 4 * .0625;  MSE over the 8 entries
    v1 = 0.25 + 1 / 36 + 1 / 9 + 1 / 9
    assert abs(avps_loss(sim, y).item() - v1 / 8) < 1e-6
    assert abs(avps_loss(sim, y, all_bg='zero').item() - (v1 + 4 * 0.0625) / 8) < 1e-6


def test_psp_avps_switch_adds_the_weighted_loss():
    torch.manual_seed(0)
    a, v, y = torch.randn(3, 10, 12), torch.randn(3, 10, 12), torch.randint(0, 29, (3, 10))
    m0 = PSP(12, 12, d_hidden=8, d_psp=16).eval(); m1 = PSP(12, 12, d_hidden=8, d_psp=16, avps=True,
                                                            avps_weight=7).eval()
    m1.load_state_dict(m0.state_dict())
    with torch.no_grad():
        sim = m0(a, v, return_extra=True)[1]['sim']
        assert torch.allclose(m1.training_loss(a, v, y)[0] - m0.training_loss(a, v, y)[0], 7 * avps_loss(sim, y),
                              atol=1e-5)


def test_probe_sum_and_mismatched_widths():
    p = Probe(16, 16, 'av').eval()
    x = torch.randn(2, 10, 16)
    with torch.no_grad(): assert torch.allclose(p(x, x), p.classifier(2 * x))
    assert isinstance(Probe(8, 16, 'av').map_a, torch.nn.Linear)
    assert [l.out_features for l in MLP3(16) if isinstance(l, torch.nn.Linear)] == [256, 128, 29]
