"""The gate: straight-through gradient, sampling, eval argmax; stacked nets independent."""

import argparse

import torch

from clustnet.model import ClustNet, gate
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
    model = ClustNet(1, (1, 28, 28), opts)
    model.reset_parameters([torch.Generator().manual_seed(0)])
    model.train()
    images = torch.randn(1, 6, 1, 28, 28)
    log_probs, probs = model(images, torch.rand(1, 6, 5))
    log_probs[..., 1].sum().backward()
    for parameter in model.cn_parameters() + model.encoder_dn_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_forward_output_is_the_chosen_dn():
    opts = tiny_opts()
    model = ClustNet(1, (1, 28, 28), opts).eval()
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
    pair = ClustNet(2, (1, 28, 28), opts)
    pair.reset_parameters([torch.Generator().manual_seed(s) for s in (1, 2)])
    alone = ClustNet(1, (1, 28, 28), opts)
    alone.reset_parameters([torch.Generator().manual_seed(2)])
    for (name, stacked), single in zip(pair.state_dict().items(), alone.state_dict().values()):
        assert torch.equal(stacked[1:2], single), name
