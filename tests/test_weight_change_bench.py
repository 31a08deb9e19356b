"benchmarks/weight_change.py: the paper run's summed learning rate by hand; the extrapolation rules on known records."
import sys
from pathlib import Path
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'benchmarks'))
import weight_change as wcb                      # noqa: E402  (the benchmark script, imported as a module)
from avbt_tacma.avbt import AVBTConfig           # noqa: E402


def test_paper_run_sum_by_hand():
    # 3339 // 128 = 26 steps a epoch, 100 epochs, 10 of warm-up; peak lr 0.2 x 128 / 256 x 2e-4 = 2e-5.
    # warm-up: 2e-5 x (0 + 1 + ... + 259) / 260 = 2e-5 x 129.5; cosine over 2340 steps to 1/10:
    # sum of 0.1 + 0.9 q, q = (1 + cos(pi s / 2340)) / 2, and the cosines over s = 0..2339 sum to 1:
    # 0.1 x 2340 + 0.9 x 1170.5
    total, lr_sum, lr_sq = wcb.paper_run(AVBTConfig.preset('paper'))
    assert total == 2600
    assert lr_sum == pytest.approx(2e-5 * (129.5 + 0.1 * 2340 + 0.9 * 1170.5), rel=1e-9)
    assert 0 < lr_sq < 2600 * 2e-5 ** 2


def _records(rate, steps=8, lr=2e-5, eta=1e-3, m=0.9):
    "Records of a change growing like `rate(n)`, every group at the same value, as `weight_change` writes them."
    names = ['audio_cnn.a.weight', 'visual_cnn.b.weight', 'audio_lstm.weight_ih_l0', 'projector.0.weight']
    return [dict(steps=n, median=rate(n), lars_bound=eta * lr * n / (1 - m),
                 layers=[dict(name=k, rel_change=rate(n)) for k in names]) for n in range(1, steps + 1)]


def test_summarize_linear_and_random_walk(capsys):
    cfg = AVBTConfig.preset('paper')
    _, lr_sum, lr_sq = wcb.paper_run(cfg)
    bound = cfg.eta * lr_sum / (1 - cfg.momentum)
    lin = wcb.summarize(dict(records=_records(lambda n: 3e-8 * n), lr_weights=2e-5))
    assert lin['slope'] == pytest.approx(1.0)
    assert lin['extrapolated_linear'] == pytest.approx(3e-8 / 2e-7 * bound)       # 0.15 of the bound's growth
    walk = wcb.summarize(dict(records=_records(lambda n: 1e-8 * n ** 0.5), lr_weights=2e-5))
    assert walk['slope'] == pytest.approx(0.5)
    assert walk['extrapolated_random_walk'] == pytest.approx(1e-8 * 8 ** 0.5 * (lr_sq / (8 * 2e-5 ** 2)) ** 0.5)
    out = capsys.readouterr().out
    assert 'Extrapolated, not measured' in out and 'visual CNN (ResNet-50)' in out
