"Backbones: VGGish loads the PyTorch port's files by an explicit name map, ResNet-50 from the hub cache; clear errors."
import pickle, urllib.error
import numpy as np, pytest, torch
from torch import nn
from avbt_tacma.core import AVBTError
from avbt_tacma.backbones import (VGGish, VGGISH_NAME_MAP, load_vggish_state, load_vggish_pca, vggish_backbone,
                                  resnet50_backbone, audio_backbone, visual_backbone, hub_checkpoints, load_weight_file,
                                  SmallConvNet)

@pytest.fixture
def hub(tmp_path):
    "An empty torch hub folder for the test; downloads are made to fail without touching the network."
    old = torch.hub.get_dir(); torch.hub.set_dir(str(tmp_path / 'hub'))
    yield tmp_path / 'hub' / 'checkpoints'
    torch.hub.set_dir(old)

@pytest.fixture
def no_network(monkeypatch):
    def fail(url, dst, *a, **k): raise urllib.error.URLError('[Errno -2] Name or service not known')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', fail)

def port_vggish():
    "The port's own module layout (harritaylor/torchvggish): nn.Sequential features and embeddings, NHWC flattening."
    layers, c = [], 1
    for v in [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M']:
        if v == 'M': layers.append(nn.MaxPool2d(2, 2))
        else: layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]; c = v
    features = nn.Sequential(*layers)
    embeddings = nn.Sequential(nn.Linear(512 * 4 * 6, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                               nn.Linear(4096, 128), nn.ReLU())
    class Port(nn.Module):
        def __init__(self):
            super().__init__(); self.features, self.embeddings = features, embeddings
        def forward(self, x):
            x = self.features(x)
            x = torch.transpose(x, 1, 3); x = torch.transpose(x, 1, 2)
            return self.embeddings(x.contiguous().view(x.size(0), -1))
    return Port()

@pytest.fixture(scope='module')
def port(tmp_path_factory):
    "The port's module, its state dict, and that state dict saved once as a file (290 MB: tests link to it)."
    torch.manual_seed(0)
    m = port_vggish().eval()
    f = tmp_path_factory.mktemp('port') / 'vggish-10086976.pth'; torch.save(m.state_dict(), f)
    return m, {k: v.clone() for k, v in m.state_dict().items()}, f

def test_name_map_covers_the_port_exactly(port):
    assert set(VGGISH_NAME_MAP) == set(port[1])
    assert set(VGGISH_NAME_MAP.values()) == set(VGGish().state_dict())

def test_vggish_file_loads_and_matches_the_port(port, hub, no_network):
    ref, sd, f = port
    hub.mkdir(parents=True); (hub / 'vggish-10086976.pth').symlink_to(f)
    # numpy, as published
    pca = {'pca_eigen_vectors': np.linalg.qr(np.random.default_rng(0).normal(size=(128, 128)))[0],
           'pca_means': np.random.default_rng(1).normal(size=(128, 1))}
    torch.save(pca, hub / 'vggish_pca_params-970ea276.pth')
    x = torch.randn(3, 1, 96, 64)
    with torch.no_grad():
        m = vggish_backbone('pretrained', download=False).eval()
        torch.testing.assert_close(m(x), ref(x), rtol=1e-5, atol=1e-6)
        emb = ref(x)
        pm = vggish_backbone('pretrained', postprocess='pca').eval()
        P, mu = torch.tensor(pca['pca_eigen_vectors'],
                             dtype=torch.float32), torch.tensor(pca['pca_means'], dtype=torch.float32)
        expect = torch.mm(P, emb.T - mu).T                  # the port's Postprocessor formula
        torch.testing.assert_close(pm(x), expect, rtol=1e-4, atol=1e-5)
        qm = vggish_backbone('pretrained', postprocess='pca+quantize').eval()
        q = qm(x)
        torch.testing.assert_close(q, torch.round((expect.clamp(-2, 2) + 2) * 255 / 4), rtol=0,
                                   atol=1.0)  # rounding ties
        assert q.min() >= 0 and q.max() <= 255 and torch.equal(q, q.round())
    # PCA buffers are saved with the model but never trained
    assert 'pca_matrix' in pm.state_dict() and not any(p is pm.pca_matrix for p in pm.parameters())

def test_vggish_wrong_shape_and_missing_key(port, tmp_path):
    sd = dict(port[1])
    bad = {**sd, 'embeddings.0.weight': torch.zeros(4096, 512 * 6 * 5)}
    with pytest.raises(AVBTError, match=r"embeddings\.0\.weight has shape \(4096, 15360\), expected \(4096, 12288\)"):
        load_vggish_state(VGGish(), bad, 'x.pth')
    missing = {k: v for k, v in sd.items() if k != 'features.11.bias'}
    with pytest.raises(AVBTError, match=r"x\.pth: not the VGGish port's weights: missing \['features\.11\.bias'\]"):
        load_vggish_state(VGGish(), missing, 'x.pth')
    with pytest.raises(AVBTError, match=r"unexpected \['fc\.weight'\]"):
        load_vggish_state(VGGish(), {**sd, 'fc.weight': torch.zeros(1)}, 'x.pth')
    with pytest.raises(AVBTError, match='expected a dict'):
        load_vggish_state(VGGish(), [1, 2], 'x.pth')
    with pytest.raises(AVBTError, match=r"pca_eigen_vectors \(128, 64\)"):
        load_vggish_pca(VGGish('pca'), {'pca_eigen_vectors': torch.zeros(128, 64), 'pca_means': torch.zeros(128)})

def test_missing_files_name_the_file_and_folder(port, hub, no_network):
    with pytest.raises(AVBTError) as e: vggish_backbone('pretrained')
    assert 'vggish-10086976.pth is not in ' + str(hub) in str(e.value) and 'download failed' in str(e.value)
    with pytest.raises(AVBTError, match='vggish-10086976.pth is not in'): vggish_backbone('pretrained', download=False)
    with pytest.raises(AVBTError, match='resnet50-0676ba61.pth is not in ' + str(hub)): resnet50_backbone('pretrained')
    with pytest.raises(AVBTError,
                       match='resnet50-11ad3fa6.pth is not in'): resnet50_backbone('pretrained', 'IMAGENET1K_V2')
    with pytest.raises(AVBTError, match='unknown ResNet-50 weights'): resnet50_backbone('pretrained', 'IMAGENET1K_V3')
    hub.mkdir(parents=True, exist_ok=True); (hub / 'vggish-10086976.pth').symlink_to(port[2])
    with pytest.raises(AVBTError,
                       match='vggish_pca_params-970ea276.pth is not in'): vggish_backbone('pretrained', 'pca')

def test_resnet50_loads_torchvision_file_from_hub(hub, no_network):
    import torchvision
    torch.manual_seed(1)
    ref = torchvision.models.resnet50().eval()
    hub.mkdir(parents=True); torch.save(ref.state_dict(), hub / 'resnet50-0676ba61.pth')
    r = resnet50_backbone('pretrained').eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref.fc = nn.Identity()
        torch.testing.assert_close(r(x), ref(x))
        assert r.forward_map(x).shape == (2, 2048, 2, 2)
    (hub / 'resnet50-0676ba61.pth').write_bytes(b'truncated')
    with pytest.raises(AVBTError,
                       match='resnet50-0676ba61.pth: not a readable weight file'): resnet50_backbone('pretrained')
    torch.save({'conv1.weight': torch.zeros(1)}, hub / 'resnet50-0676ba61.pth')
    with pytest.raises(AVBTError, match="does not fit torchvision's ResNet-50"): resnet50_backbone('pretrained')

class Evil:
    def __reduce__(self): return (print, ('code ran',))

def test_weight_files_never_run_code(tmp_path, capsys):
    p = tmp_path / 'evil.pth'; torch.save({'x': Evil()}, p)
    with pytest.raises(AVBTError, match='not a readable weight file'): load_weight_file(p)
    assert 'code ran' not in capsys.readouterr().out

def test_factory_and_small_backbones():
    a, v = audio_backbone('small', 'none'), visual_backbone('small', 'none')
    assert isinstance(a, SmallConvNet) and a(torch.randn(2, 1, 96, 64)).shape == (2, 128)
    assert v.forward_map(torch.randn(2, 3, 64, 64)).shape == (2, 128, 4, 4)
    assert isinstance(audio_backbone('vggish', 'none'), VGGish)
    assert visual_backbone('resnet50', 'none').out_dim == 2048
    with pytest.raises(AVBTError, match='no pretrained weights'): visual_backbone('small', 'pretrained')
    with pytest.raises(AVBTError, match="unknown audio backbone 'panns'"): audio_backbone('panns', 'none')
    with pytest.raises(AVBTError, match="weights must be 'pretrained' or 'none'"): vggish_backbone('imagenet')
    with pytest.raises(AVBTError, match='postprocess must be'): VGGish('whiten')
