"evaluate: the majority floor, mean and std over seeds, and predict_run vs training."
import numpy as np, pytest, torch
from avbt_tacma.core import AVBTError
from avbt_tacma.evaluate import (majority_accuracy, mean_std, segment_accuracy, confusion_matrix, predict_run,
                                 seed_accuracies)

def test_majority_floor_uses_training_labels():
    train = np.array([[28, 28, 3], [28, 1, 1]])          # background is the most common training label
    test = np.array([[28, 3, 3, 3]])                       # ... though not on test
    assert majority_accuracy(train, test) == 0.25
    assert majority_accuracy(np.eye(29)[train], np.eye(29)[test]) == 0.25
    with pytest.raises(AVBTError, match='empty'): majority_accuracy(train[:0], test)

def test_mean_std_and_seed_accuracies():
    assert mean_std([1, 2, 3, 4]) == pytest.approx((2.5, 1.2909944))
    assert seed_accuracies({'per_seed': [{'test_acc': 0.5, 'val_acc': 0.75}]}, 'val_acc') == [75.0]

def test_predict_run_agrees_with_training(tmp_path):
    ("The accuracy predict_run recomputes from the saved checkpoint is the one training recorded, and the confusion "
     "matrix sums up.")
    torch.set_num_threads(1)
    from avbt_tacma.train_heads import synthetic_features, train_head
    fs = synthetic_features(120, seed=1)
    res = train_head(fs, 'probe_av', seed=0, epochs=4, batch_size=32, lr=3e-3, out=tmp_path, progress=False,
                     mlp=(32, 16))
    r = predict_run(tmp_path, fs)
    assert r['accuracy'] == pytest.approx(res['test_acc']) and r['pred'].shape == (len(fs.splits['test']), 10)
    cm = confusion_matrix(r['pred'], r['labels'])
    assert cm.sum() == r['pred'].size and np.trace(cm) / cm.sum() == pytest.approx(segment_accuracy(r['pred'],
        r['labels']))
