"""--cn_heads: several CNs, each with its own DNs, on one encoder (SCAN's heads). Each head
trains as a net of its own, its loss that of a one-head net with its weights; after an epoch
the head with the smallest loss is the one evaluated."""

import pytest
import torch

from clustnet.errors import ClustNetError
from clustnet.losses import clustnet_loss_parts
from clustnet.model import ClustNet, ModelConfig, fold_heads, select_heads, unfold_heads
from clustnet.nets import one_head_encoder_state
from clustnet.options import parse_options
from clustnet.training import evaluate, head_parts, make_optimisers, train_epoch

GATE = ["--encnbfilters", "2", "--enchidd_repr_size", "8", "--clhidd_repr_size", "8", "--clust", "3",
        "--aug_rotation", "10", "--consistency", "1", "--group_divers", "2", "--batch_size", "8", "--progress", "False"]


def model_with(heads, n_nets=2, own_z=False):
    opts = parse_options([*GATE, "--cn_heads", str(heads), "--heads_own_z", str(own_z)])
    generators = [torch.Generator().manual_seed(seed) for seed in range(1, n_nets + 1)]
    model = ClustNet(n_nets, ModelConfig.from_options(opts, (1, 16, 16)))
    model.reset_parameters(generators)
    return opts, model, generators


def one_head_copy(model, net, head):
    """A one-net, one-head ClustNet holding net `net`'s encoder, its CN head `head` and that head's DNs."""
    opts, single, _ = model_with(1, n_nets=1)
    k = model.config.clust
    with torch.no_grad():
        encoder = {name: value[net:net + 1] for name, value in model.encoder.state_dict().items()}
        if model.config.heads_own_z:  # the head's own dense layer to z
            encoder = one_head_encoder_state(encoder, head)
        single.encoder.load_state_dict(encoder)
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


@pytest.mark.parametrize("own_z", [False, True], ids=["shared_z", "heads_own_z"])
def test_each_heads_loss_is_that_of_a_one_head_net_with_its_weights(own_z):
    opts, model, _ = model_with(3, own_z=own_z)
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


@pytest.mark.parametrize("own_z", [False, True], ids=["shared_z", "heads_own_z"])
def test_the_head_with_the_smallest_epoch_loss_is_selected_and_alone_evaluated(own_z):
    opts, model, generators = model_with(3, own_z=own_z)
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


def test_with_their_own_z_a_heads_loss_reaches_only_its_own_dense_layer():
    opts, model, _ = model_with(3, own_z=True)
    model.train()
    x = torch.randn(2, 6, 1, 16, 16)
    targets = torch.tensor([[0, 1, 0, 1, 1, 0], [1, 1, 0, 0, 1, 0]])
    out, second = model.outputs(x, torch.rand(2, 6, 9)), model.view_outputs(x.flip(-1))
    losses, _ = clustnet_loss_parts(out, second, targets.repeat_interleave(3, 0), opts)
    losses[1].backward()  # net 0, head 1
    grad = model.encoder.dense.weights[0].grad  # (N, H, in, R)
    assert grad[0, 1].abs().sum() > 0
    assert grad[0, [0, 2]].abs().sum() == 0 and grad[1].abs().sum() == 0
    assert model.encoder.conv_weights[0].grad[0].abs().sum() > 0  # the conv blocks are shared


def test_with_their_own_z_the_evaluated_z_is_the_selected_heads():
    _, model, _ = model_with(3, own_z=True)
    model.eval()
    model.selected_head.copy_(torch.tensor([2, 0]))
    x = torch.randn(2, 4, 1, 16, 16)
    flat = model.encoder.flat_features(x)  # (N, B, in): z_h = relu(flat W_h + b_h), worked out here
    weight, bias = model.encoder.dense.weights[0], model.encoder.dense.biases[0]
    for net, head in ((0, 2), (1, 0)):
        by_hand = torch.relu(flat[net] @ weight[net, head] + bias[net, head])
        assert torch.allclose(model.representation(x)[net], by_hand, atol=1e-6)
        assert torch.allclose(model.outputs(x).z[net], by_hand, atol=1e-6)
        assert torch.allclose(model.hidden_activations(x)["encoder z"][net], by_hand, atol=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--heads_own_z", "True"], "--heads_own_z True gives each CN head its own z: give --cn_heads 2 or more"),
    (["--heads_own_z", "True", "--cn_heads", "2", "--overclust", "10"],
     "--heads_own_z True: the projection head (--proj_size) and the over-clustering head (--overclust) read one z "
     "per net; give them 0"),
    (["--heads_own_z", "True", "--cn_heads", "2", "--pretrain", "True"],
     "--heads_own_z True: the one-expert net and the autoencoder have no CN heads")])
def test_heads_own_z_is_refused_where_there_is_no_head_to_own_it(args, message):
    with pytest.raises(ClustNetError) as refused:
        parse_options(args)
    assert str(refused.value) == message


def test_one_head_is_the_model_without_heads():
    opts, model, _ = model_with(1)
    assert head_parts(opts) == [] and "selected_head" not in model.state_dict()
    assert not any(name.startswith("cn.weights") for name in model.state_dict())


def test_heads_need_the_joint_mode():
    with pytest.raises(ClustNetError, match="--cn_heads 2 needs --clu_train_mode joint"):
        parse_options(["--cn_heads", "2", "--clu_train_mode", "separated", "--batch_period", "1"])


@pytest.mark.parametrize("own_z", [[], ["--heads_own_z", "True"]], ids=["shared_z", "heads_own_z"])
def test_the_heads_script_scores_every_head_and_the_selected_one_is_what_training_logged(own_z, mnist_dir,
                                                                                          output_root):
    import subprocess
    import sys

    import pandas as pd
    from conftest import REPO, TINY, run_cli
    from clustnet.layout import Experiment, read_metrics
    result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", "heads", "--epochs", "1", "--val_size", "40",
                     "--data_dir", mnist_dir, "--batch_size", "8", *TINY, "--cn_heads", "3", "--seeds", "1", "2",
                     *own_z)
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


def test_the_encoder_read_from_a_heads_own_z_file_gives_the_selected_heads_z(mnist_dir, output_root):
    """t-SNE and the k-means baselines read a weights file's encoder (nets.load_encoder)."""
    from conftest import TINY, run_cli
    from clustnet.layout import Experiment
    from clustnet.nets import load_clustnet, load_encoder
    result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", "own", "--epochs", "1", "--data_dir", mnist_dir,
                     "--batch_size", "8", *TINY, "--cn_heads", "3", "--heads_own_z", "True")
    assert result.returncode == 0, result.stderr
    weights = Experiment("own", root=output_root).weights_path(1, 1)
    (encoder, _), (model, _) = load_encoder(weights), load_clustnet(weights)
    x = torch.randn(1, 5, 1, 28, 28)
    every_head = model.encoder(x)[0]  # (B, H, R)
    matching = [head for head in range(3) if torch.allclose(encoder(x)[0], every_head[:, head], atol=1e-6)]
    assert matching == [int(model.selected_head[0])]
    assert torch.allclose(encoder(x), model.representation(x), atol=1e-6)
