"`avbt localize`: decoding any video per second, the combined checkpoint, bad inputs, and a trained model on a held-out synthetic video."
import json, subprocess, sys
from fractions import Fraction
from pathlib import Path
import numpy as np
import pytest
import torch
from avbt_tacma.core import AVBTError, save_checkpoint
from avbt_tacma.ave import CLASS_NAMES
from avbt_tacma.audio import SAMPLE_RATE
from avbt_tacma.video import write_test_clip, read_frame_number
from avbt_tacma.localize import (decode_video, video_seconds, to_windows, write_video, load_pipeline, save_pipeline,
                                 localize, localize_files, event_spans, Localizer)

def avbt(*args):
    return subprocess.run([sys.executable, '-m', 'avbt_tacma.cli', *args], capture_output=True, text=True, timeout=600)

# ---------------------------------------------------------------- decoding: any length, frame rate and audio layout
@pytest.mark.parametrize('fps', [25, Fraction(30000, 1001), 16])
def test_one_frame_per_second_at_any_frame_rate(tmp_path, fps):
    p = write_test_clip(tmp_path / 'v.mp4', seconds=12.4, fps=fps, size=(160, 120), sample_rate=44100, channels=2)
    v = decode_video(p, size=64)
    assert v.n_seconds == 12 and v.frames.shape == (12, 64, 64, 3) and v.audio.shape == (12 * SAMPLE_RATE,)
    # frame n of write_test_clip shows n: the picked frame is the one on screen at the middle of each second
    got = [read_frame_number(f) for f in decode_video(p, size=256).frames]
    want = [int(np.floor((s + 0.5) * float(fps))) % 256 for s in range(12)]      # 8 bits of the frame number
    assert np.abs(np.array(got) - want).max() <= 1, (got, want)

def test_partial_last_second_counts_from_half(tmp_path):
    assert decode_video(write_test_clip(tmp_path / 'a.mp4', seconds=10.6, size=(64, 48)), 32).n_seconds == 11
    assert decode_video(write_test_clip(tmp_path / 'b.mp4', seconds=10.4, size=(64, 48)), 32).n_seconds == 10
    assert decode_video(write_test_clip(tmp_path / 'c.mp4', seconds=1.0, size=(64, 48)), 32).n_seconds == 1

def test_stereo_44k_and_several_audio_streams(tmp_path):
    "The default stream is used, mixed to mono ((L + R) / 2) and resampled to 16 kHz."
    sr, sec = 44100, 4
    t = np.arange(sec * sr) / sr
    left, right = 0.4 * np.sin(2 * np.pi * 500 * t), 0.2 * np.sin(2 * np.pi * 500 * t)
    other = 0.5 * np.sin(2 * np.pi * 3000 * t[::2])
    frames = np.zeros((sec * 25, 32, 32, 3), np.uint8)
    v = decode_video(write_video(tmp_path / 'v.mp4', frames, 25, [np.stack([left, right]), other[None]], sr), 32)
    assert (v.info['sample_rate'], v.info['channels'], v.info['audio_streams']) == (44100, 2, 2)
    x = v.audio[SAMPLE_RATE:3 * SAMPLE_RATE]
    assert abs(np.sqrt((x ** 2).mean()) - 0.3 / np.sqrt(2)) < 0.01              # amplitude (0.4 + 0.2) / 2
    spec = np.abs(np.fft.rfft(x)); f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    assert abs(f[spec.argmax()] - 500) < 2 and spec[np.abs(f - 3000) < 20].max() < 0.01 * spec.max()  # not the 2nd stream
    # the second stream as the default one
    v2 = decode_video(write_test_clip(tmp_path / 'w.mp4', seconds=3, audio_streams=3, size=(64, 48)), 32)
    assert v2.info['audio_streams'] == 3 and v2.n_seconds == 3

def _write(path, data):
    path.write_bytes(data); return path

BAD = {  # name: (how to make it in folder d, what the one-line error says)
    'missing.mp4': (lambda d: d / 'missing.mp4', 'file not found'),
    'empty.mp4': (lambda d: _write(d / 'empty.mp4', b''), 'empty file'),
    'notes.mp4': (lambda d: _write(d / 'notes.mp4', b'not a video\n' * 50), 'unsupported format or corrupt'),
    'silent.mp4': (lambda d: write_test_clip(d / 'silent.mp4', seconds=2, audio=False, size=(64, 48)), 'no audio track'),
    'short.mp4': (lambda d: write_test_clip(d / 'short.mp4', seconds=0.6, size=(64, 48)), 'at least 1 s'),
}

@pytest.mark.parametrize('name', list(BAD))
def test_bad_video_one_line_error(tmp_path, name):
    make, msg = BAD[name]
    p = make(tmp_path)
    with pytest.raises(AVBTError) as e: decode_video(p)
    assert msg in str(e.value) and str(p) in str(e.value) and '\n' not in str(e.value)

def test_truncated_video(tmp_path):
    good = write_test_clip(tmp_path / 'good.mp4', seconds=4, size=(64, 48))
    (tmp_path / 'cut.mp4').write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    with pytest.raises(AVBTError) as e: decode_video(tmp_path / 'cut.mp4')
    assert 'cut.mp4' in str(e.value) and '\n' not in str(e.value)

def test_windows_pad_the_last_and_keep_order():
    x = torch.arange(25.)
    w = to_windows(x)
    assert w.shape == (3, 10) and w.flatten()[:25].tolist() == x.tolist() and (w[2, 5:] == 24).all()
    assert (to_windows(x, pad='zeros')[2, 5:] == 0).all()
    with pytest.raises(AVBTError): to_windows(x, pad='mirror')

# ---------------------------------------------------------------- checkpoints
def test_checkpoint_errors_are_one_line(tmp_path):
    torch.save({'weights': torch.zeros(3)}, tmp_path / 'foreign.pt')
    save_checkpoint(tmp_path / 'avbt.pt', 'avbt', {'model': {}}, {'model': {}}, CLASS_NAMES)
    (tmp_path / 'text.pt').write_text('hello')
    for name, msg in [('nope.pt', 'checkpoint not found'), ('foreign.pt', 'not an avbt-tacma checkpoint'),
                      ('text.pt', 'not a readable avbt-tacma checkpoint'), ('avbt.pt', "expected 'avbt_tacma'")]:
        with pytest.raises(AVBTError) as e: load_pipeline(tmp_path / name, 'cpu')
        assert msg in str(e.value) and '\n' not in str(e.value), (name, str(e.value))
    video = write_test_clip(tmp_path / 'v.mp4', seconds=2, size=(64, 48))
    r = avbt('localize', str(video), '--checkpoint', str(tmp_path / 'foreign.pt'), '--out', str(tmp_path / 'out'))
    assert r.returncode == 2 and 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
