"""PSP and AVEL against an independent numpy re-derivation of the official forwards (PSP_CVPR_2021 `psp_net`,
AVE-ECCV18 `att_Net`), written here from the released code's facts: weights under the official names, float64."""
import numpy as np
import pytest
import torch
from avbt_tacma.core import AVBTError
from avbt_tacma.baselines import PSP, AVEL, avps_target, AudioGuidedAttention

rng = np.random.default_rng(0)
sig = lambda x: 1 / (1 + np.exp(-x))


def W(out, inp):
    return rng.normal(0, 1 / np.sqrt(inp), (out, inp))


def lstm_sd(prefix, d_in, h):
    sd = {}
    for sfx in ('', '_reverse'):
        sd[f'{prefix}.weight_ih_l0{sfx}'], sd[f'{prefix}.weight_hh_l0{sfx}'] = W(4 * h, d_in), W(4 * h, h)
        sd[f'{prefix}.bias_ih_l0{sfx}'] = rng.normal(0, .1, 4 * h)
        sd[f'{prefix}.bias_hh_l0{sfx}'] = rng.normal(0, .1, 4 * h)
    return sd


def np_bilstm(x, sd, prefix):
    "Bidirectional one-layer LSTM, PyTorch gate order (i, f, g, o), zero initial state: x [B, T, D] -> [B, T, 2h]."
    outs = []
    for sfx, order in (('', range(x.shape[1])), ('_reverse', reversed(range(x.shape[1])))):
        Wi, Wh = sd[f'{prefix}.weight_ih_l0{sfx}'], sd[f'{prefix}.weight_hh_l0{sfx}']
        b = sd[f'{prefix}.bias_ih_l0{sfx}'] + sd[f'{prefix}.bias_hh_l0{sfx}']
        h = np.zeros((x.shape[0],
                      Wh.shape[1])); c = np.zeros_like(h); out = np.zeros((x.shape[0], x.shape[1], h.shape[1]))
        for t in order:
            i, f, g, o = np.split(x[:, t] @ Wi.T + h @ Wh.T + b, 4, axis=-1)
            c = sig(f) * c + sig(i) * np.tanh(g); h = sig(o) * np.tanh(c); out[:, t] = h
        outs.append(out)
    return np.concatenate(outs, -1)


def att_sd(prefix, a_dim, v_dim, hidden=512, k=49):
    p = prefix
    return {f'{p}affine_audio.weight': W(hidden, a_dim), f'{p}affine_audio.bias': rng.normal(0, .1, hidden),
            f'{p}affine_video.weight': W(hidden, v_dim), f'{p}affine_video.bias': rng.normal(0, .1, hidden),
            f'{p}affine_v.weight': W(k, hidden), f'{p}affine_g.weight': W(k, hidden), f'{p}affine_h.weight': W(1, k)}


def np_attention(a, video, sd, p):
    "The release's AVGA: audio term along the region axis. a [B, T, Da], video [B, T, 7, 7, C] -> [B, T, C]."
    B, T = a.shape[:2]
    V = video.reshape(B * T, -1, video.shape[-1])
    v_t = np.maximum(V @ sd[f'{p}affine_video.weight'].T + sd[f'{p}affine_video.bias'], 0)
    a_t = np.maximum(a.reshape(B * T, -1) @ sd[f'{p}affine_audio.weight'].T + sd[f'{p}affine_audio.bias'], 0)
    content = v_t @ sd[f'{p}affine_v.weight'].T + (a_t @ sd[f'{p}affine_g.weight'].T)[:, :, None]
    z = (np.tanh(content) @ sd[f'{p}affine_h.weight'].T)[..., 0]
    alpha = np.exp(z - z.max(-1, keepdims=True)); alpha /= alpha.sum(-1, keepdims=True)
    return np.einsum('nl,nlc->nc', alpha, V).reshape(B, T, -1)


def np_norm_rows(x, thr):
    x = x / (x.sum(-1, keepdims=True) + 1e-8)
    x = (x > thr) * x
    return x / (x.sum(-1, keepdims=True) + 1e-8)


def psp_state():
    sd = {'fa.0.weight': W(256, 128), 'fa.1.weight': W(128, 256), 'fv.0.weight': W(256, 512),
          'fv.1.weight': W(128, 256),
          'linear_v.weight': W(128, 512), 'linear_v.bias': np.zeros(128),        # unused by the official forward
          'L1.weight': W(64, 256), 'L2.weight': W(29, 64), 'L3.weight': W(64, 256), 'L3.bias': np.zeros(64),
          'L4.weight': W(2, 64), 'L4.bias': np.zeros(2),
          'psp.layer_norm.weight': 1 + rng.normal(0, .1, 256), 'psp.layer_norm.bias': rng.normal(0, .1, 256)}
    for n in ('v_L1', 'v_L2', 'v_fc', 'a_L1', 'a_L2', 'a_fc'): sd[f'psp.{n}.weight'] = W(256, 256)
    for c in ('v_classify', 'a_classify'): sd[f'{c}.L1.weight'], sd[f'{c}.L2.weight'] = W(64, 256), W(28, 64)
    sd.update(att_sd('attention.', 128, 512))
    sd.update(lstm_sd('lstm_a_v.lstm_audio', 128, 128)); sd.update(lstm_sd('lstm_a_v.lstm_video', 128, 128))
    return sd


def np_psp(a, video, sd, thr):
    fa = a @ sd['fa.0.weight'].T @ sd['fa.1.weight'].T
    vt = np_attention(fa, video, sd, 'attention.') @ sd['fv.0.weight'].T @ sd['fv.1.weight'].T
    la, lv = np_bilstm(fa, sd, 'lstm_a_v.lstm_audio'), np_bilstm(vt, sd, 'lstm_a_v.lstm_video')
    lin = lambda n, x: np.maximum(x @ sd[f'psp.{n}.weight'].T, 0)
    v1, v2, a1, a2 = lin('v_L1', lv), lin('v_L2', lv), lin('a_L1', la), lin('a_L2', la)
    beta_va = np.maximum(v2 @ a1.transpose(0, 2, 1) / np.sqrt(256), 0)
    g_va, g_av = np_norm_rows(beta_va, thr), np_norm_rows(beta_va.transpose(0, 2, 1), thr)
    def ln(x):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-6) * sd['psp.layer_norm.weight'] + sd['psp.layer_norm.bias']
    v_psp = ln(lin('v_fc', lv + g_va @ a2)); a_psp = ln(lin('a_fc', la + g_av @ v1))
    out = np.maximum(0.5 * (v_psp + a_psp) @ sd['L1.weight'].T, 0) @ sd['L2.weight'].T
    nv, na = v_psp / np.linalg.norm(v_psp, axis=-1,
                                    keepdims=True), a_psp / np.linalg.norm(a_psp, axis=-1, keepdims=True)
    return out, (nv * na).sum(-1)


def avel_state():
    sd = {'L1.weight': W(64, 512), 'L1.bias': rng.normal(0, .1, 64), 'L2.weight': 5 * W(29, 64),
          'L2.bias': rng.normal(0, .1, 29)}
    sd.update(att_sd('', 128, 512)); sd.update(lstm_sd('lstm_audio', 128,
                                                       128)); sd.update(lstm_sd('lstm_video', 512, 128))
    return sd


def np_avel(a, video, sd):
    c = np_attention(a, video, sd, '')
    h = np.maximum(np.concatenate([np_bilstm(a, sd, 'lstm_audio'), np_bilstm(c, sd, 'lstm_video')], -1), 0)
    out = np.maximum(h @ sd['L1.weight'].T + sd['L1.bias'], 0) @ sd['L2.weight'].T + sd['L2.bias']
    e = np.exp(out - out.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)                                         # the release returns probabilities


def as_torch(sd):
    return {k: torch.tensor(v, dtype=torch.float32) for k, v in sd.items()}


@pytest.fixture(scope='module')
def inputs():
    a = rng.normal(0, 1, (3, 10, 128)).astype(np.float32)
    v = np.maximum(rng.normal(0, 1, (3, 10, 7, 7, 512)), 0).astype(np.float32)   # non-negative, like VGG-19 pool5 maps
    return a, v


def test_psp_from_official_matches_the_release(inputs, tmp_path):
    a, v = inputs
    sd = psp_state()
    ref, ref_sim = np_psp(a.astype(np.float64), v.astype(np.float64), sd, 0.099)
    torch.save(as_torch(sd), tmp_path / 'psp_state.pt')
    m = PSP.from_official(tmp_path / 'psp_state.pt').eval()                    # loaded weights_only
    with torch.no_grad(): out, extra = m(torch.from_numpy(a), torch.from_numpy(v), return_extra=True)
    assert out.shape == (3, 10, 29)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(extra['sim'].numpy(), ref_sim, atol=1e-5, rtol=0)
    assert np.abs(ref).max() > 0.1                                             # not a trivially small output
    m_paper = PSP.from_official(as_torch(sd), axis='paper').eval()              # the switch changes the output
    with torch.no_grad(): assert (m_paper(torch.from_numpy(a), torch.from_numpy(v)) - out).abs().max() > 1e-3


def test_avel_from_official_matches_the_release(inputs):
    a, v = inputs
    sd = avel_state()
    ref = np_avel(a.astype(np.float64), v.astype(np.float64), sd)
    m = AVEL.from_official(as_torch(sd)).eval()
    with torch.no_grad(): p = m(torch.from_numpy(a), torch.from_numpy(v)).softmax(-1)
    np.testing.assert_allclose(p.numpy(), ref, atol=1e-5, rtol=0)
    assert ref.max() - ref.min() > 0.05


def test_from_official_checks_names_and_shapes():
    sd = as_torch(avel_state())
    with pytest.raises(AVBTError, match='unexpected entry'): AVEL.from_official({**sd, 'extra.weight': torch.zeros(1)})
    with pytest.raises(AVBTError, match='has shape'): AVEL.from_official({**sd, 'L1.bias': torch.zeros(63)})
    with pytest.raises(AVBTError,
                       match='missing'): AVEL.from_official({k: t for k, t in sd.items() if 'lstm_video' not in k})
    with pytest.raises(AVBTError, match='not a psp_net'): PSP.from_official(sd)
    with pytest.raises(AVBTError, match='official layout'): PSP.from_official(as_torch(psp_state()), layout='project')


def test_official_defaults_and_init():
    m = PSP(128, 512)
    assert [m.fa[0].bias, m.fa[1].bias, m.fv[0].bias, m.classifier[0].bias, m.classifier[2].bias] == [None] * 5
    n = sum(p.numel() for k, p in m.named_parameters())
    official = (128 * 256 + 256 * 128 + 512 * 256 + 256 * 128 + 4 * 512 * 128 + 512 * 512 + 512 + 512 * 128 + 512
                + 49 * 512 * 2 + 49 + 2 * 2 * (4 * 128 * 128 * 2 + 8 * 128) + 6 * 256 * 256 + 2 * 256
                + 256 * 64 + 64 * 29)
    # psp_net minus its unused linear_v, classifiers
    assert n == official - 4 * 512 * 128
    bound = np.sqrt(6 / (256 + 256))                                             # Xavier-uniform bound of the PSP maps
    assert m.v_L1.weight.abs().max() <= bound and m.v_L1.weight.abs().max() > 0.9 * bound
    a = AVEL(128, 512)
    assert a.fusion == 'concat' and a.attention.axis == 'official' and a.classifier[1].in_features == 512


def _official_avps(labels):
    "The release's get_segment_wise_relation on one-hot labels [B, T, C], with a fresh buffer."
    g = np.zeros(labels.shape[:2], np.float32)
    for i in range(labels.shape[0]):
        cols = sorted(np.sum(labels[i].T, axis=1).nonzero()[0].tolist())
        rows = labels[i, :, cols[0]].nonzero()[0].tolist()
        if rows: g[i, rows] = 1 / len(rows)
    return g


def test_avps_target_is_the_official_one():
    y = torch.from_numpy(rng.integers(0, 29, (64, 10)))
    y[rng.random((64, 10)) < 0.5] = 28
    y[:3] = 28                                                                   # all-background videos
    y[3] = torch.tensor([28, 4, 4, 28, 28, 28, 28, 28, 28, 28])
    got = avps_target(y).numpy()
    np.testing.assert_allclose(got, _official_avps(np.eye(29, dtype=np.float32)[y.numpy()]), atol=1e-7)
    np.testing.assert_allclose(got[:3], 0.1, atol=1e-7)
    np.testing.assert_allclose(got[3], [0, .5, .5] + [0] * 7, atol=1e-7)


def test_fast_attention_is_close():
    torch.manual_seed(0)
    att = AudioGuidedAttention(128, 512, axis='official', init='official')
    a, v = torch.randn(40, 128), torch.rand(40, 49, 512)
    c0, al0 = att(a, v)
    att.fast = True
    c1, al1 = att(a, v)
    assert c1.dtype == torch.float32 and (al1 - al0).abs().max() < 2e-2 and (c1 - c0).abs().max() < 5e-2
