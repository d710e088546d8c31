"""--cn_heads: several CNs, each with its own DNs, on one encoder (SCAN's heads). Each head
trains as a net of its own, its loss that of a one-head net with its weights; after an epoch
the head with the smallest loss is the one evaluated."""

import pytest
import torch

from clustnet.errors import ClustNetError
from clustnet.losses import clustnet_loss_parts
from clustnet.model import ClustNet, ModelConfig, fold_heads, select_heads, unfold_heads
from clustnet.options import parse_options
from clustnet.training import evaluate, head_parts, make_optimisers, train_epoch

GATE = ["--encnbfilters", "2", "--enchidd_repr_size", "8", "--clhidd_repr_size", "8", "--clust", "3",
        "--aug_rotation", "10", "--consistency", "1", "--group_divers", "2", "--batch_size", "8", "--progress", "False"]


def model_with(heads, n_nets=2):
    opts = parse_options([*GATE, "--cn_heads", str(heads)])
    generators = [torch.Generator().manual_seed(seed) for seed in range(1, n_nets + 1)]
    model = ClustNet(n_nets, ModelConfig.from_options(opts, (1, 16, 16)))
    model.reset_parameters(generators)
    return opts, model, generators


def one_head_copy(model, net, head):
    """A one-net, one-head ClustNet holding net `net`'s encoder, its CN head `head` and that head's DNs."""
    opts, single, _ = model_with(1, n_nets=1)
    k = model.config.clust
    with torch.no_grad():
        single.encoder.load_state_dict({name: value[net:net + 1] for name, value in model.encoder.state_dict().items()})
        for layer, weight, bias in zip(single.cn.layers, model.cn.weights, model.cn.biases):
            layer.weight.copy_(weight[net:net + 1, head])
            layer.bias.copy_(bias[net:net + 1, head])
        for mine, theirs in zip([*single.dn.weights, *single.dn.biases], [*model.dn.weights, *model.dn.biases]):
            mine.copy_(theirs[net:net + 1, head * k:(head + 1) * k])
    return opts, single


def test_folding_puts_each_head_of_each_net_on_the_net_axis_net_major():
    values = torch.arange(2 * 3 * 4).view(2, 3, 4)  # (N=2, B=3, H=4)
    folded = fold_heads(values)
    assert folded.shape == (8, 3)
    assert folded[5].tolist() == values[1, :, 1].tolist()  # net 1, head 1
    assert torch.equal(unfold_heads(folded, 4), values)
    assert select_heads(values, torch.tensor([3, 0])).tolist() == [values[0, :, 3].tolist(), values[1, :, 0].tolist()]


def test_each_heads_loss_is_that_of_a_one_head_net_with_its_weights():
    opts, model, _ = model_with(3)
    model.train()
    x = torch.randn(2, 6, 1, 16, 16)
    second_x = x.flip(-1)
    targets = torch.tensor([[0, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 0]])
    noise = torch.rand(2, 6, 3 * 3)
    out, second = model.outputs(x, noise), model.view_outputs(second_x)
    losses, _ = clustnet_loss_parts(out, second, targets.repeat_interleave(3, 0), opts)
    assert losses.shape == (6,)
    for net, head in ((0, 0), (0, 2), (1, 1)):
        single_opts, single = one_head_copy(model, net, head)
        single.train()
        head_noise = noise[net:net + 1].unflatten(-1, (3, 3))[:, :, head]
        alone, _ = clustnet_loss_parts(single.outputs(x[net:net + 1], head_noise), single.view_outputs(second_x[net:net + 1]),
                                       targets[net:net + 1], single_opts)
        assert losses[net * 3 + head].item() == pytest.approx(alone.item(), abs=1e-6), (net, head)


def test_the_head_with_the_smallest_epoch_loss_is_selected_and_alone_evaluated():
    opts, model, generators = model_with(3)
    images = torch.randn(16, 1, 16, 16, generator=generators[0])
    targets = torch.arange(16) % 2
    scores, parts = train_epoch(model, make_optimisers(model, opts), images, targets, generators, opts, 1)
    head_losses = torch.stack([parts[name] for name in head_parts(opts)], dim=1)
    assert head_parts(opts) == ["head1", "head2", "head3"]
    assert torch.allclose(scores.loss, head_losses.mean(dim=1))  # the encoder learns from every head
    assert torch.equal(model.selected_head, head_losses.argmin(dim=1))
    evaluated = evaluate(model, images, targets, generators, opts)
    for net in range(2):
        _, single = one_head_copy(model, net, int(model.selected_head[net]))
        log_probs, cluster_probs = single.eval()(images.unsqueeze(0))
        assert torch.allclose(evaluated.log_probs[net], log_probs[0], atol=1e-6)
        assert torch.allclose(evaluated.cluster_probs[net], cluster_probs[0], atol=1e-6)


def test_one_head_is_the_model_without_heads():
    opts, model, _ = model_with(1)
    assert head_parts(opts) == [] and "selected_head" not in model.state_dict()
    assert not any(name.startswith("cn.weights") for name in model.state_dict())


def test_heads_need_the_joint_mode():
    with pytest.raises(ClustNetError, match="--cn_heads 2 needs --clu_train_mode joint"):
        parse_options(["--cn_heads", "2", "--clu_train_mode", "separated", "--batch_period", "1"])


def test_the_heads_script_scores_every_head_and_the_selected_one_is_what_training_logged(mnist_dir, output_root):
    import subprocess
    import sys

    import pandas as pd
    from conftest import REPO, TINY, run_cli
    from clustnet.layout import Experiment, read_metrics
    result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", "heads", "--epochs", "1", "--val_size", "40",
                     "--data_dir", mnist_dir, "--batch_size", "8", *TINY, "--cn_heads", "3", "--seeds", "1", "2")
    assert result.returncode == 0, result.stderr
    script = [sys.executable, str(REPO / "experiments" / "cn_heads.py"), "--exp_id", "heads", "--epoch", "1"]
    done = subprocess.run(script, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    exp = Experiment("heads", root=output_root)
    table = pd.read_csv(exp.heads_path(1, "val"))
    assert list(table.net) == [1, 1, 1, 2, 2, 2] and list(table["head"]) == [1, 2, 3] * 2
    for net, rows in table.groupby("net"):
        logged = read_metrics(exp.metrics_path(net)).set_index("epoch").loc[1]
        chosen = rows[rows.selected == 1].squeeze()
        assert rows.selected.sum() == 1 and chosen.loss == rows.loss.min()
        assert chosen.loss == pytest.approx(logged[f"loss_head{int(chosen['head'])}"])
        for name in ("binary", "pos_clust", "neg_clust"):
            assert chosen[name] == pytest.approx(logged[f"val_{name}"], abs=1e-6)
    refused = subprocess.run(script[:-1] + ["7"], capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.strip() == \
        "error: net 1 of experiment 'heads' has no weights file of epoch 7"
