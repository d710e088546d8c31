"""The gate: straight-through gradient, sampling, eval argmax; stacked nets independent."""

import argparse

import torch

from clustnet.model import ClustNet, ModelConfig, gate
from clustnet.options import parse_options


def tiny_opts(**changes):
    opts = parse_options(["--encnbfilters", "2", "--enchidd_repr_size", "8", "--clhidd_repr_size", "8"])
    return argparse.Namespace(**{**vars(opts), **changes})


def test_eval_gate_is_argmax_and_one_hot():
    probs = torch.tensor([[[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]]])
    for mode in ("DE", "GSF", "FD"):
        h = gate(probs, probs.log(), mode, training=False)
        assert h.tolist() == [[[0, 1, 0], [1, 0, 0]]]
    assert torch.equal(gate(probs, probs.log(), "SD", training=True), probs)


def test_training_gate_samples_from_p():
    probs = torch.tensor([0.1, 0.6, 0.3]).expand(1, 20000, 3)
    noise = torch.rand(1, 20000, 3, generator=torch.Generator().manual_seed(0))
    h = gate(probs, probs.log(), "DE", training=True, noise=noise)
    assert torch.allclose(h, torch.eye(3)[h.argmax(dim=-1)], rtol=0, atol=1e-6)  # one-hot, not p
    frequencies = h.mean(dim=(0, 1))
    assert torch.allclose(frequencies, probs[0, 0], atol=0.015)


def test_straight_through_gradient_reaches_the_cn():
    torch.manual_seed(0)
    opts = tiny_opts()
    model = ClustNet(1, ModelConfig.from_options(opts, (1, 28, 28)))
    model.reset_parameters([torch.Generator().manual_seed(0)])
    model.train()
    images = torch.randn(1, 6, 1, 28, 28)
    log_probs, probs = model(images, torch.rand(1, 6, 5))
    log_probs[..., 1].sum().backward()
    for parameter in model.cn_parameters() + model.encoder_dn_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_forward_output_is_the_chosen_dn():
    opts = tiny_opts()
    model = ClustNet(1, ModelConfig.from_options(opts, (1, 28, 28))).eval()
    model.reset_parameters([torch.Generator().manual_seed(1)])
    images = torch.randn(1, 4, 1, 28, 28)
    log_probs, probs = model(images)
    z = model.encoder(images)
    chosen = probs.argmax(-1)
    expert_logits = model.dn(z)  # (1, B, K, 2)
    expected = torch.log_softmax(expert_logits[0, torch.arange(4), chosen[0]], dim=-1)
    assert torch.allclose(log_probs[0], expected, atol=1e-6)


def test_stacked_nets_start_as_if_alone():
    opts = tiny_opts()
    pair = ClustNet(2, ModelConfig.from_options(opts, (1, 28, 28)))
    pair.reset_parameters([torch.Generator().manual_seed(s) for s in (1, 2)])
    alone = ClustNet(1, ModelConfig.from_options(opts, (1, 28, 28)))
    alone.reset_parameters([torch.Generator().manual_seed(2)])
    for (name, stacked), single in zip(pair.state_dict().items(), alone.state_dict().values()):
        assert torch.equal(stacked[1:2], single), name


def test_a_weights_file_rebuilds_its_net_from_its_saved_config(tmp_path):
    """The file holds the ModelConfig; a net is rebuilt from it, whatever the options'
    defaults become, and a file from before the config was saved is rebuilt from its options."""
    from clustnet.checkpoint import load_checkpoint, weights_bytes, write_bytes
    from clustnet.layout import CLUSTNET
    from clustnet.nets import load_clustnet
    from clustnet.options import options_ini
    import io
    opts = tiny_opts(clust=3, denblayers=2, dehidd_repr_size=6)
    config = ModelConfig.from_options(opts, (1, 16, 16))
    model = ClustNet(1, config)
    model.reset_parameters([torch.Generator().manual_seed(3)])
    path = tmp_path / "net"
    write_bytes(path, weights_bytes(CLUSTNET, model, {}, [torch.Generator()], 0, 1, options_ini(opts), None))
    checkpoint = load_checkpoint(path)
    assert ModelConfig(**checkpoint["config"]) == config and config.image_shape == (1, 16, 16)
    # The options saved beside it disagree: the config decides the architecture.
    checkpoint["options"] = options_ini(tiny_opts(clust=2))
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_bytes(path, buffer.getvalue())
    rebuilt, _ = load_clustnet(path)
    assert rebuilt.config == config and rebuilt.dn.n_experts == 3
    # An older file, without the config: the options and the image shape.
    del checkpoint["config"]
    checkpoint["options"] = options_ini(opts)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    write_bytes(path, buffer.getvalue())
    rebuilt, _ = load_clustnet(path)
    assert rebuilt.config == config
    for name, tensor in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], tensor), name


def test_conv3bn_encoder_is_padded_convs_with_batch_norm_per_net():
    # Each net of a stacked conv3bn encoder computes what torch's own layers compute for it
    # alone: 3x3 padded conv, BatchNorm2d (batch statistics in training, updating the running
    # ones that evaluation reads), 2x2 max-pool, ReLU; then the dense layer to z, ReLU.
    opts = tiny_opts(enc_block="conv3bn", encnblayers=2)
    encoder = ClustNet(2, ModelConfig.from_options(opts, (1, 12, 12))).encoder
    encoder.reset_parameters([torch.Generator().manual_seed(s) for s in (1, 2)])
    with torch.no_grad():
        for weight, bias in zip(encoder.bn_weights, encoder.bn_biases):
            weight.uniform_(0.5, 1.5), bias.uniform_(-0.5, 0.5)
    images = torch.randn(2, 5, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    assert encoder.feature_shape == (4, 3, 3)
    for training in (True, False):
        before = {name: buffer.clone() for name, buffer in encoder.named_buffers()}
        z = encoder.train(training)(images)
        for net in range(2):
            x = images[net]
            for block in range(2):
                conv = torch.nn.Conv2d(x.shape[1], 2 * 2 ** block, 3, padding=1)
                norm = torch.nn.BatchNorm2d(2 * 2 ** block).train(training)
                with torch.no_grad():
                    conv.weight.copy_(encoder.conv_weights[block][net])
                    conv.bias.copy_(encoder.conv_biases[block][net])
                    norm.weight.copy_(encoder.bn_weights[block][net])
                    norm.bias.copy_(encoder.bn_biases[block][net])
                    norm.running_mean.copy_(before[f"bn_mean{block}"][net])
                    norm.running_var.copy_(before[f"bn_var{block}"][net])
                x = torch.relu(torch.nn.functional.max_pool2d(norm(conv(x)), 2))
            expected = torch.relu(x.flatten(1) @ encoder.dense.weight[net] + encoder.dense.bias[net])
            assert torch.allclose(z[net], expected, atol=1e-5), (training, net)
            # The running statistics moved (in training) as BatchNorm2d's did.
            assert torch.allclose(encoder.bn_mean1[net], norm.running_mean, atol=1e-6)
            assert torch.allclose(encoder.bn_var1[net], norm.running_var, atol=1e-6)
    assert not torch.allclose(encoder.bn_mean0, torch.zeros_like(encoder.bn_mean0))
