"""CMBS against the released forward (marmot-xy/CMBS `model/main_model.py`, `model/models.py`), transcribed here module
by module (minus the `.cuda()` calls and commented-out lines), on random weights, both settings, in float64."""
import copy
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn import MultiheadAttention, Linear, LayerNorm, Dropout
from avbt_tacma.core import AVBTError
from avbt_tacma.baselines import CMBS


# ---- model/models.py -------------------------------------------------------------------------------------------------
class Encoder(nn.Module):
    def __init__(self, encoder_layer, num_layers):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(encoder_layer) for i in range(num_layers)])
        self.num_layers = num_layers

    def forward(self, src):
        output = src
        for i in range(self.num_layers): output = self.layers[i](output)
        return output


class Decoder(nn.Module):
    def __init__(self, decoder_layer, num_layers):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(decoder_layer) for i in range(num_layers)])
        self.num_layers = num_layers

    def forward(self, tgt, memory):
        output = tgt
        for i in range(self.num_layers): output = self.layers[i](output, memory)
        return output


class EncoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward=1024, dropout=0.1):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = Linear(d_model, dim_feedforward)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.norm1 = LayerNorm(d_model)
        self.norm2 = LayerNorm(d_model)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def forward(self, src):
        src2 = self.self_attn(src, src, src)[0]
        src = src + self.dropout1(src2)
        src = self.norm1(src)
        src2 = self.linear2(self.dropout(F.relu(self.linear1(src))))
        src = src + self.dropout2(src2)
        return self.norm2(src)


class DecoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward=1024, dropout=0.1):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = Linear(d_model, dim_feedforward)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model)
        self.norm1 = LayerNorm(d_model)
        self.norm2 = LayerNorm(d_model)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def forward(self, tgt, memory):
        memory = torch.cat([memory, tgt], dim=0)
        tgt2 = self.multihead_attn(tgt, memory, memory)[0]
        tgt = tgt + self.dropout1(tgt2)
        tgt = self.norm1(tgt)
        tgt2 = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        tgt = tgt + self.dropout2(tgt2)
        return self.norm2(tgt)


class New_Audio_Guided_Attention(nn.Module):
    def __init__(self, beta):
        super().__init__()
        self.beta = beta
        self.relu = nn.ReLU()
        self.video_input_dim = 512
        self.audio_input_dim = 128
        self.hidden_dim = 256
        self.affine_video_1 = nn.Linear(self.video_input_dim, self.video_input_dim)
        self.affine_audio_1 = nn.Linear(self.audio_input_dim, self.video_input_dim)
        self.affine_bottleneck = nn.Linear(self.video_input_dim, self.hidden_dim)
        self.affine_v_c_att = nn.Linear(self.hidden_dim, self.video_input_dim)
        self.affine_video_2 = nn.Linear(self.video_input_dim, self.hidden_dim)
        self.affine_audio_2 = nn.Linear(self.audio_input_dim, self.hidden_dim)
        self.affine_v_s_att = nn.Linear(self.hidden_dim, 1)
        self.latent_dim = 4
        self.video_query = nn.Linear(self.video_input_dim, self.video_input_dim // self.latent_dim)
        self.video_key = nn.Linear(self.video_input_dim, self.video_input_dim // self.latent_dim)
        self.video_value = nn.Linear(self.video_input_dim, self.video_input_dim)
        self.affine_video_ave = nn.Linear(self.video_input_dim, self.hidden_dim)
        self.affine_video_3 = nn.Linear(self.video_input_dim, self.hidden_dim)
        self.ave_bottleneck = nn.Linear(512, 256)
        self.ave_v_att = nn.Linear(self.hidden_dim, 1)
        self.tanh = nn.Tanh()
        self.softmax = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(0.2)
        self.norm = nn.LayerNorm(self.video_input_dim)

    def forward(self, video, audio):
        audio = audio.transpose(1, 0)
        batch, t_size, h, w, v_dim = video.size()
        a_dim = audio.size(-1)
        audio_feature = audio.reshape(batch * t_size, a_dim)
        visual_feature = video.reshape(batch, t_size, -1, v_dim)
        raw_visual_feature = visual_feature
        video_query_feature = self.video_query(visual_feature).reshape(batch * t_size, h * w, -1)
        video_key_feature = self.video_key(visual_feature).reshape(batch * t_size, h * w, -1).permute(0, 2, 1)
        energy = torch.bmm(video_query_feature, video_key_feature)
        attention = self.softmax(energy)
        video_value_feature = self.video_value(visual_feature).reshape(batch * t_size, h * w, -1)
        output = torch.matmul(attention, video_value_feature)
        output = self.norm(visual_feature.reshape(batch * t_size, h * w, -1) + self.dropout(output))
        visual_feature = output
        video_average = visual_feature.sum(dim=1) / (h * w)
        video_average = video_average.reshape(batch * t_size, v_dim)
        video_average = self.relu(self.affine_video_ave(video_average)).unsqueeze(-2)
        self_video_att_feat = visual_feature.reshape(batch * t_size, -1, v_dim)
        self_video_att_query = self.relu(self.affine_video_3(self_video_att_feat))
        self_query = self_video_att_query * video_average
        self_spatial_att_maps = self.softmax(self.tanh(self.ave_v_att(self_query)).transpose(2, 1))
        self_att_feat = torch.bmm(self_spatial_att_maps, visual_feature).squeeze().reshape(batch, t_size, v_dim)
        audio_query_1 = self.relu(self.affine_audio_1(audio_feature)).unsqueeze(-2)
        video_query_1 = self.relu(self.affine_video_1(visual_feature)).reshape(batch * t_size, h * w, -1)
        audio_video_query_raw = (audio_query_1 * video_query_1).mean(-2)
        audio_video_query = self.relu(self.affine_bottleneck(audio_video_query_raw))
        channel_att_maps = self.affine_v_c_att(audio_video_query).sigmoid().reshape(batch, t_size, -1, v_dim)
        c_att_visual_feat = (raw_visual_feature * (channel_att_maps + 1))
        c_att_visual_feat = c_att_visual_feat.reshape(batch * t_size, -1, v_dim)
        c_att_visual_query = self.relu(self.affine_video_2(c_att_visual_feat))
        audio_query_2 = self.relu(self.affine_audio_2(audio_feature)).unsqueeze(-2)
        audio_video_query_2 = c_att_visual_query * audio_query_2
        spatial_att_maps = self.softmax(self.tanh(self.affine_v_s_att(audio_video_query_2)).transpose(2, 1))
        c_s_att_visual_feat = torch.bmm(spatial_att_maps, c_att_visual_feat).squeeze().reshape(batch, t_size, v_dim)
        return c_s_att_visual_feat + self.beta * self_att_feat.sigmoid() * c_s_att_visual_feat


# ---- model/main_model.py ---------------------------------------------------------------------------------------------
class RNNEncoder(nn.Module):
    def __init__(self, audio_dim, video_dim, d_model, num_layers):
        super().__init__()
        self.audio_rnn = nn.LSTM(audio_dim, int(d_model / 2), num_layers=num_layers, batch_first=True,
                                 bidirectional=True)
        self.visual_rnn = nn.LSTM(video_dim, d_model, num_layers=num_layers, batch_first=True, bidirectional=True)

    def forward(self, audio_feature, visual_feature):
        return self.audio_rnn(audio_feature)[0], self.visual_rnn(visual_feature)[0]


class InternalTemporalRelationModule(nn.Module):
    def __init__(self, input_dim, d_model, feedforward_dim):
        super().__init__()
        self.encoder_layer = EncoderLayer(d_model=d_model, nhead=4, dim_feedforward=feedforward_dim)
        self.encoder = Encoder(self.encoder_layer, num_layers=2)
        self.affine_matrix = nn.Linear(input_dim, d_model)

    def forward(self, feature):
        return self.encoder(self.affine_matrix(feature))


class CrossModalRelationAttModule(nn.Module):
    def __init__(self, input_dim, d_model, feedforward_dim):
        super().__init__()
        self.decoder_layer = DecoderLayer(d_model=d_model, nhead=4, dim_feedforward=feedforward_dim)
        self.decoder = Decoder(self.decoder_layer, num_layers=1)
        self.affine_matrix = nn.Linear(input_dim, d_model)

    def forward(self, query_feature, memory_feature):
        return self.decoder(self.affine_matrix(query_feature), memory_feature)


class CAS_Module(nn.Module):
    def __init__(self, d_model, num_class=28):
        super().__init__()
        self.classifier = nn.Sequential(nn.Conv1d(in_channels=d_model, out_channels=num_class + 1, kernel_size=1,
                                                  stride=1, padding=0, bias=False))

    def forward(self, content):
        return self.classifier(content.permute(0, 2, 1)).permute(0, 2, 1)


class SupvLocalizeModule(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.classifier = nn.Linear(d_model, 1)
        self.event_classifier = nn.Linear(d_model, 28)

    def forward(self, fused_content):
        max_fused_content, _ = fused_content.transpose(1, 0).max(1)
        return self.classifier(fused_content), self.event_classifier(max_fused_content)


class AudioVideoInter(nn.Module):
    def __init__(self, d_model, n_head, head_dropout=0.1):
        super().__init__()
        self.dropout = nn.Dropout(0.1)
        self.video_multihead = MultiheadAttention(d_model, num_heads=n_head, dropout=head_dropout)
        self.norm1 = nn.LayerNorm(d_model)

    def forward(self, video_feat, audio_feat):
        global_feat = video_feat * audio_feat
        memory = torch.cat([audio_feat, video_feat], dim=0)
        mid_out = self.video_multihead(global_feat, memory, memory)[0]
        return self.norm1(global_feat + self.dropout(mid_out))


class weak_main_model(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.beta, self.alpha, self.gamma = config["beta"], config["alpha"], config["gamma"]
        self.spatial_channel_att = New_Audio_Guided_Attention(self.beta)
        self.video_input_dim = config["video_inputdim"]
        self.video_fc_dim = config["video_inputdim"]
        self.d_model = config["d_model"]
        self.audio_input_dim = config["audio_inputdim"]
        self.v_fc = nn.Linear(self.video_input_dim, self.video_fc_dim)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.1)
        self.video_encoder = InternalTemporalRelationModule(self.video_fc_dim, self.d_model, 2048)
        self.video_decoder = CrossModalRelationAttModule(self.video_fc_dim, self.d_model, 1024)
        self.audio_encoder = InternalTemporalRelationModule(self.audio_input_dim, self.d_model, 2048)
        self.audio_decoder = CrossModalRelationAttModule(self.audio_input_dim, self.d_model, 1024)
        self.AVInter = AudioVideoInter(self.d_model, n_head=2, head_dropout=0.2)
        self.VAInter = AudioVideoInter(self.d_model, n_head=2, head_dropout=0.2)
        self.audio_gated = nn.Sequential(nn.Linear(self.d_model, 1), nn.Sigmoid())
        self.video_gated = nn.Sequential(nn.Linear(self.d_model, 1), nn.Sigmoid())
        self.CAS_model = CAS_Module(d_model=self.d_model, num_class=28)
        self.classifier = nn.Linear(self.d_model, 1)
        self.softmax = nn.Softmax(dim=-1)
        self.audio_cas = nn.Linear(self.d_model, 29)
        self.video_cas = nn.Linear(self.d_model, 29)

    def forward(self, visual_feature, audio_feature):
        audio_feature = audio_feature.transpose(1, 0).contiguous()
        visual_feature = self.v_fc(visual_feature)
        visual_feature = self.dropout(self.relu(visual_feature))
        visual_feature = self.spatial_channel_att(visual_feature, audio_feature)
        visual_feature = visual_feature.transpose(1, 0).contiguous()
        video_key_value_feature = self.video_encoder(visual_feature)
        audio_query_output = self.audio_decoder(audio_feature, video_key_value_feature)
        audio_key_value_feature = self.audio_encoder(audio_feature)
        video_query_output = self.video_decoder(visual_feature, audio_key_value_feature)
        audio_gate = self.audio_gated(video_key_value_feature)
        video_gate = self.video_gated(audio_key_value_feature)
        av_gate = (audio_gate + video_gate) / 2
        av_gate = av_gate.permute(1, 0, 2)
        video_query_output = (1 - self.alpha) * video_query_output + audio_gate * video_query_output * self.alpha
        audio_query_output = (1 - self.alpha) * audio_query_output + video_gate * audio_query_output * self.alpha
        video_cas = self.video_cas(video_query_output)
        audio_cas = self.audio_cas(audio_query_output)
        video_cas = video_cas.permute(1, 0, 2)
        audio_cas = audio_cas.permute(1, 0, 2)
        video_cas_gate = video_cas.sigmoid()
        audio_cas_gate = audio_cas.sigmoid()
        video_query_output = self.AVInter(video_query_output, audio_query_output)
        audio_query_output = self.VAInter(audio_query_output, video_query_output)
        fused_content = (video_query_output + audio_query_output) / 2
        fused_content = fused_content.transpose(0, 1)
        cas_score = self.CAS_model(fused_content)
        cas_score = self.gamma * video_cas_gate * cas_score + self.gamma * audio_cas_gate * cas_score
        sorted_scores, _ = cas_score.sort(descending=True, dim=1)
        topk_scores = sorted_scores[:, :4, :]
        raw_logits = torch.mean(topk_scores, dim=1)[:, None, :]
        fused_logits = av_gate * raw_logits
        logits, _ = torch.max(fused_logits, dim=1)
        event_scores = self.softmax(logits)
        return av_gate.squeeze(), raw_logits.squeeze(), event_scores


class supv_main_model(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.beta = config["beta"]
        self.spatial_channel_att = New_Audio_Guided_Attention(self.beta)
        self.video_input_dim = config['video_inputdim']
        self.audio_input_dim = config['audio_inputdim']
        self.video_fc_dim = 512
        self.d_model = config['d_model']
        self.v_fc = nn.Linear(self.video_input_dim, self.video_fc_dim)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.2)
        self.video_encoder = InternalTemporalRelationModule(self.video_input_dim, self.d_model, 1024)
        self.video_decoder = CrossModalRelationAttModule(self.video_input_dim, self.d_model, 1024)
        self.audio_encoder = InternalTemporalRelationModule(self.d_model, self.d_model, 1024)
        self.audio_decoder = CrossModalRelationAttModule(self.d_model, self.d_model, 1024)
        self.audio_visual_rnn_layer = RNNEncoder(self.audio_input_dim, self.video_input_dim, self.d_model, 1)
        self.audio_gated = nn.Sequential(nn.Linear(self.d_model, 1), nn.Sigmoid())
        self.video_gated = nn.Sequential(nn.Linear(self.d_model, 1), nn.Sigmoid())
        self.AVInter = AudioVideoInter(self.d_model, n_head=4, head_dropout=0.2)
        self.VAInter = AudioVideoInter(self.d_model, n_head=4, head_dropout=0.2)
        self.localize_module = SupvLocalizeModule(self.d_model)
        self.video_norm = nn.LayerNorm(self.d_model)
        self.audio_norm = nn.LayerNorm(self.d_model)
        self.audio_cas = nn.Linear(self.d_model, 28)
        self.video_cas = nn.Linear(self.d_model, 28)
        self.alpha = config['alpha']
        self.gamma = config['gamma']

    def forward(self, visual_feature, audio_feature):
        audio_rnn_input = audio_feature
        audio_feature = audio_feature.transpose(1, 0).contiguous()
        visual_feature = self.v_fc(visual_feature)
        visual_feature = self.dropout(self.relu(visual_feature))
        visual_feature = self.spatial_channel_att(visual_feature, audio_feature)
        visual_rnn_input = visual_feature
        audio_rnn_output1, visual_rnn_output1 = self.audio_visual_rnn_layer(audio_rnn_input, visual_rnn_input)
        audio_encoder_input1 = audio_rnn_output1.transpose(1, 0).contiguous()
        visual_encoder_input1 = visual_rnn_output1.transpose(1, 0).contiguous()
        video_key_value_feature = self.video_encoder(visual_encoder_input1)
        audio_query_output = self.audio_decoder(audio_encoder_input1, video_key_value_feature)
        audio_key_value_feature = self.audio_encoder(audio_encoder_input1)
        video_query_output = self.video_decoder(visual_encoder_input1, audio_key_value_feature)
        audio_gate = self.audio_gated(audio_key_value_feature)
        video_gate = self.video_gated(video_key_value_feature)
        audio_visual_gate = audio_gate * video_gate
        video_query_output = video_query_output + audio_gate * video_query_output * self.alpha
        audio_query_output = audio_query_output + video_gate * audio_query_output * self.alpha
        video_cas = self.video_cas(video_query_output)
        audio_cas = self.audio_cas(audio_query_output)
        video_cas = video_cas.permute(1, 0, 2)
        audio_cas = audio_cas.permute(1, 0, 2)
        sorted_scores_video, _ = video_cas.sort(descending=True, dim=1)
        topk_scores_video = sorted_scores_video[:, :4, :]
        score_video = torch.mean(topk_scores_video, dim=1)
        sorted_scores_audio, _ = audio_cas.sort(descending=True, dim=1)
        topk_scores_audio = sorted_scores_audio[:, :4, :]
        score_audio = torch.mean(topk_scores_audio, dim=1)
        av_score = (score_video + score_audio) / 2
        video_query_output = self.AVInter(video_query_output, audio_query_output)
        audio_query_output = self.VAInter(audio_query_output, video_query_output)
        is_event_scores, event_scores = self.localize_module((video_query_output + audio_query_output) / 2)
        event_scores = event_scores + self.gamma * av_score
        return is_event_scores, event_scores, audio_visual_gate, av_score


CONFIGS = {'supervised': (supv_main_model, dict(video_inputdim=512, audio_inputdim=128, d_model=256, alpha=0.1,
                                                gamma=0.3, beta=0.4)),
           'weak': (weak_main_model, dict(video_inputdim=512, audio_inputdim=128, d_model=256, alpha=0.2, gamma=0.5,
                                          beta=0.5))}


def released(setting, seed=0):
    "The release's model with random weights (biases and LayerNorm affine moved off their defaults), float64, eval."
    torch.manual_seed(seed)
    cls, cfg = CONFIGS[setting]
    m = cls(cfg).double().eval()
    with torch.no_grad():
        for k, p in m.named_parameters():
            if 'norm' in k or k.endswith('bias'): p.add_(0.1 * torch.randn_like(p))
    return m


@pytest.fixture(scope='module')
def inputs():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 10, 128, generator=g, dtype=torch.float64)
    v = torch.rand(3, 10, 7, 7, 512, generator=g, dtype=torch.float64) * 2     # non-negative, like VGG-19 pool5 maps
    return a, v


def official_state(m):
    "The state dict as the release saves it: through nn.DataParallel, so every name starts with `module.`."
    return {f'module.{k}': t.clone() for k, t in m.state_dict().items()}


def test_cmbs_supervised_matches_the_release(inputs, tmp_path):
    a, v = inputs
    ref = released('supervised')
    with torch.no_grad(): ref.localize_module.classifier.bias -= ref(v, a)[0].flatten().sort()[0][14:16].mean()
    torch.save(official_state(ref), tmp_path / 'cmbs_supv.pt')
    m = CMBS.from_official(tmp_path / 'cmbs_supv.pt').double().eval()          # loaded weights_only
    assert m.setting == 'supervised' and (m.alpha, m.gamma) == (0.1, 0.3)
    with torch.no_grad():
        is_ev, ev, gate, av = ref(v, a)
        got = m.official(a, v)
        logits = m(a, v)
    for x, y in zip(got, (is_ev.transpose(1, 0)[..., 0], ev, gate.transpose(1, 0)[..., 0], av)):
        assert x.shape == y.shape
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
    assert ev.abs().max() > 0.1 and ev.std() > 0.01                                   # not a trivially flat output
    # the release's compute_accuracy_supervised: background unless sigmoid(is_event) > 0.5, else the top event class
    pred = torch.where(is_ev.transpose(1, 0)[..., 0].sigmoid() > 0.5, ev.argmax(-1)[:, None], torch.tensor(28))
    assert 0 < (pred == 28).sum() < pred.numel()                                       # both branches are exercised
    assert torch.equal(logits.argmax(-1), pred)


def test_cmbs_weak_matches_the_release(inputs):
    a, v = inputs
    ref = released('weak', seed=2)
    m = CMBS.from_official(official_state(ref)).double().eval()
    assert m.setting == 'weak' and (m.alpha, m.gamma, m.spatial_channel_att.beta) == (0.2, 0.5, 0.5)
    with torch.no_grad():
        gate, raw, scores = ref(v, a)
        got = m.official(a, v)
        logits = m(a, v)
    for x, y in zip(got, (gate, raw, scores)):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
    assert raw.std() > 0.01
    yv = torch.eye(29, dtype=torch.float64)[[3, 28, 7]]
    loss = m.weak_loss(a, v, yv)[0]
    torch.testing.assert_close(loss, nn.MultiLabelSoftMarginLoss()(scores, yv), atol=1e-7, rtol=0)
    # the release's test: is_event = av_gate, thresholded after another sigmoid, so every segment gets the top class
    assert torch.equal(logits.argmax(-1), raw.argmax(-1)[:, None].expand(-1, 10))


def test_cmbs_supervised_loss_is_the_release(inputs):
    a, v = inputs
    m = CMBS.from_official(official_state(released('supervised'))).double().eval()
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, 28, (3, 1), generator=g).expand(3, 10).clone()
    y[torch.rand(3, 10, generator=g) < 0.4] = 28
    y[2] = 28                                                                           # an all-background video
    labels = torch.eye(29, dtype=torch.float64)[y]                                     # the release's one-hot labels
    with torch.no_grad():
        is_ev, ev, gate, av = m.official(a, v)
        fg, evn = labels[:, :, :-1].max(-1)                                            # supv_main.train_epoch
        cls = evn.max(-1)[0]
        bce, ce = nn.BCEWithLogitsLoss(), nn.CrossEntropyLoss()
        ref = bce(is_ev, fg) + bce(gate, fg) + ce(av, cls) + ce(ev, cls)
        torch.testing.assert_close(m.training_loss(a, v, y)[0], ref, atol=1e-7, rtol=0)


def test_cmbs_from_official_checks_names_and_shapes():
    sd = official_state(released('supervised'))
    with pytest.raises(AVBTError, match="unexpected entry 'extra.weight'"):
        CMBS.from_official({**sd, 'extra.weight': torch.zeros(1)})
    bad = {**sd, 'module.localize_module.event_classifier.bias': torch.zeros(27)}
    with pytest.raises(AVBTError, match=r"'localize_module.event_classifier.bias' has shape \(27,\)"):
        CMBS.from_official(bad)
    with pytest.raises(AVBTError, match='missing'):
        CMBS.from_official({k: t for k, t in sd.items() if 'visual_rnn' not in k})
    with pytest.raises(AVBTError, match='not a CMBS state dict'): CMBS.from_official({'L1.weight': torch.zeros(2, 2)})
    with pytest.raises(AVBTError, match='supervised CMBS state dict'): CMBS.from_official(sd, setting='weak')
    with pytest.raises(AVBTError, match='needs spatial'):
        CMBS().official(torch.zeros(1, 10, 128), torch.zeros(1, 10, 512))


def test_cmbs_defaults_are_the_release():
    for setting, (cls, cfg) in CONFIGS.items():
        ours, ref = CMBS(setting=setting), cls(cfg)
        unused = ('spatial_channel_att.ave_bottleneck.', 'video_norm.', 'audio_norm.', 'classifier.',
                  'audio_decoder.decoder.layers.0.self_attn.', 'video_decoder.decoder.layers.0.self_attn.',
                  'video_encoder.encoder_layer.', 'audio_encoder.encoder_layer.', 'video_decoder.decoder_layer.',
                  'audio_decoder.decoder_layer.')
        want = {k: tuple(t.shape) for k, t in ref.state_dict().items() if not k.startswith(unused)}
        assert {k: tuple(t.shape) for k, t in ours.state_dict().items()} == want
