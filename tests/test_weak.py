"""The weak setting: each release's multiple-instance pooling and loss against a transcription of its code, the video
labels against the AVE release's mil_labels.h5, and the noisy clips of the community layout."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from avbt_tacma.core import AVBTError
from avbt_tacma.baselines import PSP, AVEL, mil_psp
from avbt_tacma.tacma import TACMA, mil_max_softmax
from avbt_tacma.features import load_features, video_level_labels


def avel_weak_release(score, labels):
    "AVE-ECCV18 models_weakly.att_Net.forward's tail and weak_supervised_main.train's loss."
    out = score.permute(0, 2, 1)
    out = nn.MaxPool1d(out.size(2))(out).view(out.size(0), -1)
    out = F.softmax(out, dim=-1)
    return nn.MultiLabelSoftMarginLoss()(out, labels)


def psp_weak_release(score, W3, prob_labels):
    "PSP_CVPR_2021 weakly_model.psp_net.forward's tail and weakly_supervised_main.train's loss."
    temporal_wei = nn.ReLU()(W3(score))
    temporal_wei = torch.sigmoid(temporal_wei)
    score = score * temporal_wei.expand_as(score)
    out = score.permute(0, 2, 1)
    out_avg = nn.AvgPool1d(out.size(2))(out).view(out.size(0), -1)
    out_avg = F.softmax(out_avg, dim=-1)
    return nn.BCELoss()(out_avg, prob_labels), score


@pytest.fixture(scope='module')
def batch():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(6, 10, 29, generator=g, dtype=torch.float64)
    yv = torch.eye(29, dtype=torch.float64)[[0, 5, 28, 28, 13, 27]]
    return logits, yv


def test_avel_weak_pooling_is_the_release(batch):
    logits, yv = batch
    got = mil_max_softmax(logits, yv)
    torch.testing.assert_close(got, avel_weak_release(logits, yv), atol=1e-10, rtol=0)
    assert got.item() > 0.5                                      # the soft margin of a softmax never reaches 0


def test_psp_weak_pooling_is_the_release(batch):
    logits, yv = batch
    torch.manual_seed(1)
    W3 = nn.Linear(29, 1, bias=False).double()
    ref, gated = psp_weak_release(logits, W3, yv)
    torch.testing.assert_close(mil_psp(logits, W3, yv), ref, atol=1e-10, rtol=0)
    assert torch.equal(gated.argmax(-1), logits.argmax(-1))       # the weights are positive: same segment prediction


def test_heads_use_their_release_forms(batch):
    torch.manual_seed(0)
    a, v = torch.randn(2, 10, 16), torch.rand(2, 10, 2, 2, 16)
    yv = torch.eye(29)[[4, 28]]
    m = PSP(16, 16, setting='weak', d_hidden=8, d_psp=16, d_att=8, k=4).eval()
    loss, logits = m.weak_loss(a, v, yv)
    torch.testing.assert_close(loss, psp_weak_release(logits, m.W3, yv)[0])
    m = AVEL(16, 16, d_att=8, k=4, d_hidden=8).eval()
    loss, logits = m.weak_loss(a, v, yv)
    torch.testing.assert_close(loss, avel_weak_release(logits, yv))
    m = TACMA(16, 16, d_l=16, d_h=8, d_e=8).eval()
    loss, logits = m.weak_loss(a, v.mean((2, 3)), yv)
    torch.testing.assert_close(loss, avel_weak_release(logits, yv))
    with pytest.raises(AVBTError, match='W3'): PSP(16, 16, d_hidden=8, d_psp=16, d_att=8, k=4).weak_loss(a, v, yv)


def test_video_labels_are_the_release_mil_labels(ave_meta):
    META = ave_meta
    import h5py
    with h5py.File(META / 'mil_labels.h5') as f: mil = f['avadataset'][()]
    with h5py.File(META / 'labels_closs.h5') as f: mask = f['avadataset'][()] > 0
    y = np.where(mask, mil.argmax(-1)[:, None], 28)                   # segment labels: the event class where it is
    ours = video_level_labels(np.eye(29, dtype=np.float32)[y])
    same = (ours == mil).all(-1)
    assert same.sum() >= len(mil) - 2, np.nonzero(~same)[0]           # row 26 has a zero-length event (no segment)
    assert (~same).sum() == (~mask.any(-1)).sum()                     # and only clips without an event segment differ


def test_real_noisy_files_load(ave_meta, tmp_path):
    META = ave_meta
    import h5py
    n = 5
    for name, shape in (('audio_feature', (n, 10, 128)), ('visual_feature', (n, 10, 2, 2, 8)),
                        ('visual_feature_noisy', (178, 10, 2, 2, 8))):
        with h5py.File(tmp_path / f'{name}.h5', 'w') as f: f['avadataset'] = np.zeros(shape)
    with h5py.File(tmp_path / 'labels.h5', 'w') as f: f['avadataset'] = np.eye(29)[np.full((n, 10), 28)]
    for s, o in (('train', [0, 1, 2]), ('val', [3]), ('test', [4])):
        with h5py.File(tmp_path / f'{s}_order.h5', 'w') as f: f['order'] = np.array(o)
    with h5py.File(tmp_path / 'mil_labels.h5', 'w') as f: f['avadataset'] = np.eye(29)[[1, 2, 3, 4, 5]]
    for name in ('labels_noisy.h5', 'audio_feature_noisy.h5'): (tmp_path / name).symlink_to((META / name).resolve())
    fs = load_features(tmp_path, weak=True)
    assert fs.noisy['audio'].shape == (178, 10, 128) and (fs.noisy['video_labels'].argmax(-1) == 28).all()
    a, v, yv = fs.pooled().weak_train()
    assert a.shape == (3 + 178, 10, 128) and v.shape == (181, 10, 8) and yv.shape == (181, 29)
    with h5py.File(tmp_path / 'visual_feature_noisy.h5', 'w') as f: f['avadataset'] = np.zeros((177, 10, 2, 2, 8))
    msg = r'visual_feature_noisy\.h5: 177 noisy clips, but .*labels_noisy\.h5 labels 178'
    with pytest.raises(AVBTError, match=msg):
        load_features(tmp_path, weak=True)


def test_weak_downloads_are_the_release_files(ave_meta):
    "The weak setting's files that `avbt data download --what features --weak` fetches from GitHub: size and sha256."
    import hashlib
    from avbt_tacma.download import WEAK_FEATURES
    for r in WEAK_FEATURES:
        if r.sha256 is None: continue
        p = ave_meta / r.name
        assert p.stat().st_size == r.size and hashlib.sha256(p.read_bytes()).hexdigest() == r.sha256, r.name


def test_weak_flag_needs_features(tmp_path):
    from avbt_tacma.cli import main
    import contextlib, io
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(['data', 'download', '--what', 'videos', '--weak', '--to', str(tmp_path / 'v')]) == 2
    assert '--weak applies to --what features' in err.getvalue() and err.getvalue().strip().count('\n') == 0
