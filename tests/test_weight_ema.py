"""--weight_ema: the evaluated nets are the moving average of the trained weights."""

import math

import pandas as pd
import pytest
import torch

from conftest import TINY, run_cli
from clustnet.averaging import averaged_model, copy_buffers
from clustnet.checkpoint import load_checkpoint
from clustnet.data import load_dataset
from clustnet.layout import Experiment
from clustnet.model import ClustNet, ModelConfig
from clustnet.nets import load_clustnet
from clustnet.options import parse_options


def tiny_clustnet(n_nets, *args):
    opts = parse_options([*TINY, *args])
    return ClustNet(n_nets, ModelConfig.from_options(opts, (1, 28, 28)))


def fill(model, value):
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(value)


@pytest.mark.parametrize("decay, expected", [
    # decay 0.1, below the warm-up's 2/11 and 3/12: the first update copies a = 1, then
    # 0.1 a + 0.9 b, then 0.1 (0.1 a + 0.9 b) + 0.9 c = 0.01 + 0.27 + 6.3.
    (0.1, 0.01 * 1 + 0.09 * 3 + 0.9 * 7),
    # decay 0.9, warmed up: 2/11 at the second update, 3/12 at the third: 2/11 + 9/11 x 3 = 29/11,
    # then 0.25 x 29/11 + 0.75 x 7.
    (0.9, 0.25 * 29 / 11 + 0.75 * 7)])
def test_average_by_hand_and_buffers_copied(decay, expected):
    model = tiny_clustnet(2, "--cn_heads", "3")
    averaged = averaged_model(model, decay)
    for value in (1.0, 3.0, 7.0):
        fill(model, value)
        averaged.update_parameters(model)
    for param in averaged.module.parameters():
        assert torch.allclose(param, torch.full_like(param, expected))
    assert int(averaged.n_averaged) == 3
    model.selected_head.copy_(torch.tensor([2, 1]))
    copy_buffers(averaged, model)
    assert averaged.module.selected_head.tolist() == [2, 1]
    assert averaged_model(model, 0.0) is None


def test_each_net_of_a_stack_is_averaged_apart():
    """Nets side by side: net 2's average depends on net 2's weights only (the second update's
    decay is the warm-up's 2/11)."""
    model = tiny_clustnet(2)
    averaged = averaged_model(model, 0.9)
    steps = [(1.0, -1.0), (2.0, 5.0)]
    for first, second in steps:
        with torch.no_grad():
            for param in model.parameters():
                param[0].fill_(first)
                param[1].fill_(second)
        averaged.update_parameters(model)
    for param in averaged.module.parameters():
        assert torch.allclose(param[0], torch.full_like(param[0], 2 / 11 * 1 + 9 / 11 * 2))
        assert torch.allclose(param[1], torch.full_like(param[1], 2 / 11 * -1 + 9 / 11 * 5))


def test_the_scores_and_the_weights_files_net_are_the_average(mnist_dir, output_root):
    result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", "ema", "--epochs", "2", "--data_dir", mnist_dir,
                     "--batch_size", "50", "--optim", "Adam", "--lr", "0.001", *TINY, "--cn_heads", "2",
                     "--weight_ema", "0.5")
    assert result.returncode == 0, result.stderr
    exp = Experiment("ema", root=output_root)
    checkpoint = load_checkpoint(exp.weights_path(1, 2))
    assert checkpoint["ema_steps"] == 2 * 200 // 50  # 200 training images, an update per step
    trained, average = checkpoint["model"], checkpoint["model_ema"]
    assert torch.equal(trained["selected_head"], average["selected_head"])
    assert any(not torch.equal(trained[name], average[name]) for name in trained if name != "selected_head")
    model, _ = load_clustnet(exp.weights_path(1, 2))
    for name, value in model.state_dict().items():
        assert torch.equal(value, average[name]), name
    images = load_dataset("MNIST", mnist_dir).test_x.unsqueeze(0)
    with torch.no_grad():
        log_probs, cluster_probs = model(images, None)
    scores = pd.read_csv(exp.scores_path(1, 2))
    assert torch.allclose(torch.tensor(scores[["pred_0", "pred_1"]].values, dtype=torch.float32), log_probs[0],
                          atol=1e-5)
    assert torch.allclose(torch.tensor(scores.filter(like="clust_").values, dtype=torch.float32),
                          cluster_probs[0], atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--weight_ema", "1"], "--weight_ema 1.0: must be below 1.0"),
    (["--weight_ema", "0.9", "--pretrain", "True"], "--weight_ema: averages ClustNet's weights"),
])
def test_weight_ema_out_of_range_is_refused(mnist_dir, args, message):
    result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", "bad", "--data_dir", mnist_dir, *TINY, *args)
    assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr


def test_teacher_consistency_by_hand():
    # Teacher p (.5, .5) and (.9, .1); the CN's p' on view 2 (.5, .5) and (.2, .8):
    # p_T . p' = .5 and .18 + .08 = .26.
    from types import SimpleNamespace
    from clustnet.losses import teacher_disagreement
    from clustnet.model import GateOutputs
    second = torch.tensor([[0.5, 0.5], [0.2, 0.8]], requires_grad=True)
    out = GateOutputs(log_probs=None, probs=None, logits=None, hard=None, experts=None, z=None,
                      teacher_probs=torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    view2 = GateOutputs(log_probs=None, probs=second, logits=None, hard=None, experts=None, z=None)
    value = teacher_disagreement(out, view2, torch.tensor([0, 0]), SimpleNamespace())
    assert value.item() == pytest.approx(-(math.log(0.5) + math.log(0.26)) / 2, abs=1e-6)


def test_the_teacher_is_the_average_on_view_1_and_takes_no_step():
    """At the first step the average is the net itself, so the teacher's term on view 1 equals
    the CN's own consistency -log(p . p'). A teacher whose CN has zero weights gives p_T
    uniform over the 3 DNs, so its term is -log(sum_k p'_k / 3) = log 3 whatever the CN's p'
    on view 2 (each of 2 heads, 2 nets). The teacher's weights take no gradient."""
    from test_gate_research import tiny_model_and_batch
    from clustnet.training import train_epoch

    def first_step_parts(zero_teacher_cn):
        opts, model, optimisers, images, targets, generators = tiny_model_and_batch(
            "--batch_size", "16", "--aug_rotation", "10", "--consistency", "1", "--teacher_consistency", "1",
            "--weight_ema", "0.9", "--cn_heads", "2", "--clean_view", "True")
        averaged = averaged_model(model, opts.weight_ema)
        if zero_teacher_cn:
            with torch.no_grad():
                for param in averaged.module.cn_parameters():
                    param.zero_()
        _, parts = train_epoch(model, optimisers, images, targets, generators, opts, 1, averaged)
        assert all(param.grad is None for param in averaged.module.parameters())
        return parts

    same = first_step_parts(zero_teacher_cn=False)
    assert torch.allclose(same["teacher_consistency"], same["consistency"], atol=1e-6)
    uniform = first_step_parts(zero_teacher_cn=True)
    assert torch.allclose(uniform["teacher_consistency"], torch.full((2,), math.log(3)), atol=1e-5)
    assert not torch.allclose(uniform["consistency"], torch.full((2,), math.log(3)), atol=1e-3)


def test_teacher_consistency_without_an_average_is_refused(mnist_dir):
    result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", "bad", "--data_dir", mnist_dir, *TINY,
                     "--teacher_consistency", "1")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--teacher_consistency 1.0: the teacher is the moving average of the weights" in result.stderr
