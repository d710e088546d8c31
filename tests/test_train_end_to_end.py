"""A tiny real run: every file of SPEC section 4, every CSV column, printed = recomputed."""

import os
import re

import numpy as np
import pandas as pd
import torch

from conftest import TINY, run_cli
from clustnet.nets import load_clustnet
from clustnet.data import load_dataset
from clustnet.layout import Experiment, atomic_path, read_scores, score_columns, write_scores
from clustnet.metrics import accuracies


def test_tiny_mnist_run_writes_every_artifact(mnist_dir, output_root):
    result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", "tiny", "--epochs", "2",
                     "--data_dir", mnist_dir, "--batch_size", "8", *TINY)
    assert result.returncode == 0, result.stderr
    exp = Experiment("tiny", root=output_root)
    assert exp.net_ids() == [1]
    data = load_dataset("MNIST", mnist_dir)
    test_images, test_labels = data.test_x, data.test_y.tolist()
    for epoch in range(3):
        assert exp.weights_path(1, epoch).is_file()
        assert exp.confusion_path(1, epoch, True).is_file()
        assert exp.confusion_path(1, epoch, False).is_file()
        test = pd.read_csv(exp.scores_path(1, epoch))
        train = pd.read_csv(exp.scores_path(1, epoch, "train"))
        assert list(test.columns) == score_columns(5) and list(train.columns) == score_columns(5)
        assert len(test) == 80 and len(train) == 200
        # The CSV holds what the epoch's weights output on the test images, in their order.
        model, _ = load_clustnet(exp.weights_path(1, epoch))
        with torch.no_grad():
            log_probs, probs = model(test_images.unsqueeze(0))
        assert np.allclose(test[["pred_0", "pred_1"]].to_numpy(), log_probs[0].numpy(), rtol=1e-6, atol=1e-6)
        assert np.allclose(test[[f"clust_{k}" for k in range(5)]].to_numpy(), probs[0].numpy(), rtol=1e-6, atol=1e-7)
        assert test.origTarg.tolist() == test_labels
        assert set(test.targ) == {0, 1} and (test.targ == test.origTarg.isin(range(5))).all()
        # The accuracies printed for this epoch are those of the CSV.
        line = re.search(rf"net 1 epoch {epoch}: .*test loss \S+ binary (\S+)% pos (\S+)% neg (\S+)%",
                         result.stdout)
        recomputed = accuracies(test.origTarg, test.targ, test[["pred_0", "pred_1"]].values,
                                test[[f"clust_{k}" for k in range(5)]].values, range(5), range(10))
        assert [float(v) for v in line.groups()] == [round(100 * recomputed[k], 2)
                                                     for k in ("binary", "pos_clust", "neg_clust")]
    checkpoint = torch.load(exp.weights_path(1, 2), weights_only=False)
    assert checkpoint["epoch"] == 2 and "optimisers" in checkpoint and "generator" in checkpoint
    ini = exp.ini_path(1).read_text()
    assert ini.startswith("[default]") and "ind_id = 1" in ini and "epochs = 2" in ini


def test_artifacts_get_the_umask_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.csv") as tmp:
            tmp.write_text("x\n")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644


def test_scores_keep_9_significant_digits(tmp_path):
    path = tmp_path / "scores.csv"
    log_probs = np.log(np.array([[0.25, 0.75], [0.5, 0.5]]))
    # Two DNs 3e-7 apart: at 6 digits both read 0.2, and the argmax read back would be DN 0.
    clusters = np.array([[0.123456789012, 0.876543210988, 0.0], [0.2000001, 0.2000004, 0.5999995]])
    write_scores(path, np.array([3, 7]), np.array([1, 0]), log_probs, clusters)
    assert path.read_text().splitlines()[1].split(",")[4:] == ["0.123456789", "0.876543211", "0"]
    frame = read_scores(path)
    assert frame.clust_0[0] == 0.123456789 and frame.clust_1[0] == 0.876543211
    assert frame[["clust_0", "clust_1", "clust_2"]].values[1].tolist() == [0.2000001, 0.2000004, 0.5999995]
    assert frame.pred_1[0] == float(f"{np.log(0.75):.9g}") and frame.pred_1[0] != float(f"{np.log(0.75):.8g}")
    # float32 outputs, as the nets write them, read back bit for bit.
    outputs = torch.rand(50, 5, generator=torch.Generator().manual_seed(0)).softmax(dim=1).numpy()
    write_scores(path, np.zeros(50, int), np.zeros(50, int), np.log(outputs[:, :2]), outputs)
    read = read_scores(path)[[f"clust_{k}" for k in range(5)]].to_numpy().astype(np.float32)
    assert np.array_equal(read, outputs)
