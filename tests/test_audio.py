"""The VGGish log-mel front-end against an independent numpy reference (the structure of VGGish's mel_features.py)."""
import math
import numpy as np
import pytest
import torch
from avbt_tacma.audio import vggish_log_mel, mel_matrix, clip_audio, CLIP_SAMPLES
from avbt_tacma.core import AVBTError


# ---- reference: plain numpy, written from the published algorithm, no code shared with avbt_tacma.audio ----
def _frame(x, win, hop):
    n = 1 + (len(x) - win) // hop
    return np.stack([x[i * hop:i * hop + win] for i in range(n)])


def _hz_to_mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_weights(n_mels=64, n_bins=257, sr=16000, lo=125.0, hi=7500.0):
    bins_mel = _hz_to_mel(np.linspace(0.0, sr / 2.0, n_bins))
    edges = np.linspace(_hz_to_mel(lo), _hz_to_mel(hi), n_mels + 2)
    w = np.zeros((n_bins, n_mels))
    for i in range(n_mels):
        l, c, u = edges[i], edges[i + 1], edges[i + 2]
        for b in range(n_bins):
            m = bins_mel[b]
            w[b, i] = max(0.0, min((m - l) / (c - l), (u - m) / (u - c)))
    w[0, :] = 0.0
    return w


_W = _mel_weights()


def _log_mel(x):
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)          # periodic Hann
    spec = np.abs(np.fft.rfft(_frame(x, 400, 160) * win, 512))          # magnitude, FFT 512
    return np.log(spec @ _W + 0.01)


def reference(x, framing='segment'):
    x = np.asarray(x, dtype=np.float64)
    if framing == 'vggish':
        lm = _log_mel(x)
        n = 1 + (len(lm) - 96) // 96
        return np.stack([lm[i * 96:(i + 1) * 96] for i in range(n)])
    return np.stack([_log_mel(x[t * 16000:(t + 1) * 16000])[:96] for t in range(len(x) // 16000)])


def _signals():
    rng = np.random.default_rng(1)
    t = np.arange(CLIP_SAMPLES) / 16000
    yield rng.uniform(-1, 1, CLIP_SAMPLES).astype(np.float32)                        # white noise
    yield (0.4 * np.sin(2 * np.pi * (80 + 390 * t) * t) * (t % 3 < 2)).astype(np.float32)   # chirp with silences
    yield (1e-4 * rng.standard_normal(CLIP_SAMPLES)).astype(np.float32)              # near silence: log offset matters
    yield np.concatenate([np.zeros(70000), 0.9 * np.sign(np.sin(2 * np.pi * 3000 * t[:90000]))]).astype(np.float32)


def test_mel_matrix_matches_reference():
    np.testing.assert_allclose(mel_matrix().numpy(), _W, atol=1e-12)


@pytest.mark.parametrize('framing', ['segment', 'vggish'])
def test_log_mel_matches_reference(framing):
    for x in _signals():
        ours, ref = vggish_log_mel(x, 16000, framing), reference(x, framing)
        assert ours.shape == (10, 96, 64) and ours.dtype == torch.float32
        err = np.abs(ours.numpy() - ref).max()
        assert err < 1e-3, err


def test_framings_differ_where_expected():
    x = next(_signals())
    seg, vgg = vggish_log_mel(x, 16000, 'segment'), vggish_log_mel(x, 16000, 'vggish')
    np.testing.assert_allclose(seg[0].numpy(), vgg[0].numpy(), atol=1e-6)   # both start at sample 0
    assert np.abs(seg[5].numpy() - vgg[5].numpy()).max() > 1                 # 5 s vs 4.8 s


def test_other_rates_are_resampled():
    sr = 48000
    tone = np.sin(2 * np.pi * 1000 * np.arange(2 * sr) / sr)
    lm = vggish_log_mel(tone, sr)
    assert lm.shape == (2, 96, 64)
    centres = np.linspace(_hz_to_mel(125), _hz_to_mel(7500), 66)[1:-1]
    assert set(lm.mean(1).argmax(-1).tolist()) == {int(np.abs(centres - _hz_to_mel(1000)).argmin())}
    # a 16-kHz copy of the same tone gives nearly the same examples
    ref = vggish_log_mel(np.sin(2 * np.pi * 1000 * np.arange(32000) / 16000), 16000)
    assert float((lm - ref)[:, :, 10:50].abs().max()) < 0.05


def test_silence_and_bad_input():
    np.testing.assert_allclose(vggish_log_mel(np.zeros(32000)).numpy(), math.log(0.01), atol=1e-6)
    with pytest.raises(AVBTError, match='too short'): vggish_log_mel(np.zeros(15999))
    with pytest.raises(AVBTError, match='framing'): vggish_log_mel(np.zeros(16000), framing='centre')


def test_clip_audio_pads_trims_and_mixes():
    a, n = clip_audio(np.stack([np.full(22050 * 3, 0.5), np.full(22050 * 3, 0.1)]), 22050)
    assert a.shape == (160000,) and n == 48000 and a.dtype == torch.float32
    assert abs(float(a[1000:47000].mean()) - 0.3) < 1e-3 and float(a[48000:].abs().max()) == 0.0
    a, n = clip_audio(np.arange(170000) / 170000, 16000)
    assert n == 160000 and float(a[-1]) == pytest.approx(159999 / 170000)


@pytest.mark.parametrize('sr', [44100, 48000])
def test_resampled_log_mel_matches_official_vggish_front_end(sr):
    "The official front-end resamples with resampy (kaiser_best): our log-mel at 44.1/48 kHz must match it."
    resampy = pytest.importorskip('resampy')
    rng = np.random.default_rng(sr)
    n = 4 * sr
    t = np.arange(n) / sr
    sigs = [rng.uniform(-1, 1, n),                                                    # white noise: every band
            0.5 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.05 * rng.standard_normal(n)]   # chirp up to ~7.4 kHz
    for x in sigs:
        ref = reference(resampy.resample(x, sr, 16000))                             # official chain: resampy + log-mel
        ours = vggish_log_mel(x, sr).numpy()
        err = np.abs(ours - ref)
        assert ours.shape == ref.shape == (4, 96, 64)
        assert err.max() <= 0.05 and err.mean() <= 0.002, (sr, err.max(), err.mean())
    from avbt_tacma.audio import resample
    np.testing.assert_allclose(resample(sigs[0], sr).numpy(), resampy.resample(sigs[0], sr, 16000), atol=1e-5, rtol=0)
    old = vggish_log_mel(sigs[0], sr).numpy() - vggish_log_mel(torch.as_tensor(sigs[0]), sr).numpy()
    assert np.abs(old).max() == 0                                                     # numpy and torch input agree
