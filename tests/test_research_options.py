"""The research options, each against a value worked out by hand or an effect one can see:
--entweig, --clustdivers, --lr schedules, --lr_cl, --batch_period, the gate modes FS, FD, SD
and GSF with --temperature, and the optimisers SGD, Adam and AMSGrad.

Tensors are stacked as the model holds them: (N nets, B images, ...). Nothing here reads a
dataset: tiny hand-written tensors, or a tiny net on a few random 12x12 images."""

import math

import pytest
import torch

from clustnet import training
from clustnet.losses import clustnet_loss
from clustnet.model import ClustNet, GateOutputs, ModelConfig, gate
from clustnet.options import parse_options

LN2 = math.log(2)


def opts_for(*argv):
    """Resolved options of a tiny net (one conv block, for 12x12 images), plus `argv`."""
    return parse_options(["--encnblayers", "1", "--encnbfilters", "2", "--enchidd_repr_size", "6",
                          "--clhidd_repr_size", "6", "--clust", "3", "--progress", "False", *map(str, argv)])


def tiny_model(opts, n_nets=1, seed=0):
    model = ClustNet(n_nets, ModelConfig.from_options(opts, (1, 12, 12)))
    model.reset_parameters([torch.Generator().manual_seed(seed + net) for net in range(n_nets)])
    return model


def entropy_by_hand(*p):
    return -sum(x * math.log(x) for x in p if x > 0)


# Two nets, three images, K = 2. The binary output and the targets give the same NLL to both
# nets; the CN's distributions differ.
LOG_PROBS = torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]], dtype=torch.float64).log().expand(2, 3, 2)
TARGETS = torch.tensor([[0, 1, 1], [0, 1, 1]])
NLL = -(math.log(0.8) + math.log(0.6) + math.log(0.5)) / 3
PROBS = torch.tensor([[[0.5, 0.5], [0.9, 0.1], [1.0, 0.0]],  # net 1: soft choices
                      [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]],  # net 2: one-hot choices
                     dtype=torch.float64)


def losses(entweig=0.0, clustdivers=0.0, probs=PROBS):
    opts = opts_for("--entweig", entweig, "--clustdivers", clustdivers)
    return clustnet_loss(GateOutputs(LOG_PROBS, probs, probs.log(), None, None, None), None, TARGETS, opts).tolist()


def test_without_the_options_the_loss_is_the_nll():
    assert losses() == pytest.approx([NLL, NLL], abs=1e-12)


def test_entweig_adds_the_mean_entropy_of_p():
    mean_entropy = (LN2 + entropy_by_hand(0.9, 0.1) + 0) / 3  # net 1; net 2's choices are one-hot
    assert losses(entweig=0.3) == pytest.approx([NLL + 0.3 * mean_entropy, NLL], abs=1e-12)
    # The sign: more weight, a larger loss wherever p is not one-hot.
    assert losses(entweig=0.6)[0] > losses(entweig=0.3)[0] > losses()[0]


def test_clustdivers_subtracts_the_entropy_of_the_batch_mean_p():
    net_1 = entropy_by_hand(0.8, 0.2)  # mean of (0.5, 0.5), (0.9, 0.1), (1, 0)
    net_2 = entropy_by_hand(2 / 3, 1 / 3)
    assert losses(clustdivers=0.5) == pytest.approx([NLL - 0.5 * net_1, NLL - 0.5 * net_2], abs=1e-12)
    # The sign: a batch spread over the DNs costs less than a batch sent to one DN.
    collapsed = torch.tensor([[1.0, 0.0]], dtype=torch.float64).expand(2, 3, 2)
    assert losses(clustdivers=0.5, probs=collapsed) == pytest.approx([NLL, NLL], abs=1e-12)
    assert losses(clustdivers=0.5)[1] < losses(clustdivers=0.5, probs=collapsed)[1]


def test_entweig_and_clustdivers_together():
    expected = NLL + 0.3 * (LN2 + entropy_by_hand(0.9, 0.1)) / 3 - 0.5 * entropy_by_hand(0.8, 0.2)
    assert losses(entweig=0.3, clustdivers=0.5)[0] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("schedule, n_epochs, expected", [
    ([0.1, 0.01], 4, [0.1, 0.1, 0.01, 0.01]),
    ([0.1, 0.01, 0.001], 6, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]),
    ([0.1, 0.01], 5, [0.1, 0.1, 0.1, 0.01, 0.01]),  # parts of 3 and 2 epochs
    ([0.1], 3, [0.1, 0.1, 0.1]),
])
def test_lr_schedule_splits_the_epochs_in_equal_consecutive_parts(schedule, n_epochs, expected):
    assert [training.lr_at(schedule, epoch, n_epochs) for epoch in range(1, n_epochs + 1)] == expected


def learning_rates(opts, epoch):
    optimisers = training.make_optimisers(tiny_model(opts), opts)
    training.set_learning_rates(optimisers, opts, epoch)
    return {name: [group["lr"] for group in optimiser.param_groups] for name, optimiser in optimisers.items()}


def test_lr_cl_is_the_cn_optimisers_schedule_and_lr_the_others():
    opts = opts_for("--epochs", 4, "--lr", 0.1, 0.01, "--lr_cl", 0.5, 0.05)
    assert learning_rates(opts, 1) == {"cn": [0.5], "main": [0.1]}
    assert learning_rates(opts, 2) == {"cn": [0.5], "main": [0.1]}
    assert learning_rates(opts, 3) == {"cn": [0.05], "main": [0.01]}
    # Without --lr_cl the CN follows --lr.
    opts = opts_for("--epochs", 4, "--lr", 0.1, 0.01)
    assert learning_rates(opts, 4) == {"cn": [0.01], "main": [0.01]}


def test_the_two_optimisers_split_the_parameters_between_cn_and_the_rest():
    opts = opts_for()
    model = tiny_model(opts)
    optimisers = training.make_optimisers(model, opts)
    held = {name: {id(p) for group in optimiser.param_groups for p in group["params"]}
            for name, optimiser in optimisers.items()}
    assert held["cn"] == {id(p) for p in model.cn.parameters()}
    assert held["main"] == {id(p) for module in (model.encoder, model.dn) for p in module.parameters()}


def record_steps(optimisers, model):
    """Wrap each optimiser's step: the log gets, per step, the optimiser's name and which of
    the CN's and the encoder's + DNs' weights the step changed."""
    log = []
    groups = {"cn": model.cn_parameters(), "main": model.encoder_dn_parameters()}
    for name, optimiser in optimisers.items():
        def step(original=optimiser.step, name=name):
            before = {group: [p.detach().clone() for p in params] for group, params in groups.items()}
            original()
            changed = {group: any(not torch.equal(old, p) for old, p in zip(before[group], params))
                       for group, params in groups.items()}
            log.append((name, changed["cn"], changed["main"]))
        optimiser.step = step
    return log


def train_one_epoch(opts, n_images):
    model = tiny_model(opts)
    optimisers = training.make_optimisers(model, opts)
    training.set_learning_rates(optimisers, opts, 1)
    log = record_steps(optimisers, model)
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(n_images, 1, 12, 12, generator=generator)
    targets = torch.randint(0, 2, (n_images,), generator=generator)
    training.train_epoch(model, optimisers, images, targets, [torch.Generator().manual_seed(4)], opts, 1)
    return log


def test_batch_period_alternates_k_cn_batches_then_k_encoder_and_dn_batches():
    # 6 batches of 2, period 2: CN, CN, main, main, CN, CN; each step moves only its own part.
    log = train_one_epoch(opts_for("--batch_size", 2, "--batch_period", 2, "--lr", 0.1), 12)
    assert log == [("cn", True, False)] * 2 + [("main", False, True)] * 2 + [("cn", True, False)] * 2
    log = train_one_epoch(opts_for("--batch_size", 2, "--batch_period", 1, "--lr", 0.1), 8)
    assert log == [("cn", True, False), ("main", False, True)] * 2


def test_batch_period_0_steps_everything_on_every_batch():
    log = train_one_epoch(opts_for("--batch_size", 2, "--batch_period", 0, "--lr", 0.1), 6)
    assert [name for name, _, _ in log] == ["cn", "main"] * 3
    assert all(changed_cn if name == "cn" else changed_main for name, changed_cn, changed_main in log)


# Inverse-CDF sampling: p = (0.2, 0.5, 0.3), cumulated (0.2, 0.7, 1.0); a uniform u picks the
# first expert whose cumulated probability reaches u.
FS_PROBS = torch.tensor([0.2, 0.5, 0.3]).expand(1, 6, 3)
FS_UNIFORMS = torch.tensor([0.0, 0.19, 0.21, 0.69, 0.71, 0.999])
FS_CHOICES = [0, 0, 1, 1, 2, 2]


def assert_one_hot(h, choices):
    """h is (to rounding: h = hard + p - p.detach()) the one-hot rows of `choices` (N, B)."""
    expected = torch.eye(h.shape[-1], dtype=h.dtype)[torch.tensor(choices)]
    assert torch.allclose(h.detach(), expected, rtol=0, atol=1e-6), (h, choices)


def uniforms_as_noise(first_column):
    """(1, B, 3) noise whose first column is `first_column` (the one the sampling reads); the
    other columns are far from it, so a gate reading them would choose differently."""
    return torch.stack([first_column, 1 - first_column, 1 - first_column], dim=-1).unsqueeze(0)


@pytest.mark.parametrize("training_mode", [True, False])
def test_fs_samples_by_inverse_cdf_in_training_and_in_eval(training_mode):
    h = gate(FS_PROBS, FS_PROBS.log(), "FS", training_mode, uniforms_as_noise(FS_UNIFORMS))
    assert_one_hot(h, [FS_CHOICES])


def test_de_samples_like_fs_in_training_and_takes_the_argmax_in_eval():
    noise = uniforms_as_noise(FS_UNIFORMS)
    assert_one_hot(gate(FS_PROBS, FS_PROBS.log(), "DE", True, noise), [FS_CHOICES])
    assert_one_hot(gate(FS_PROBS, FS_PROBS.log(), "DE", False, noise), [[1] * 6])


def test_the_sampled_gate_passes_the_gradient_to_p_straight_through():
    probs = FS_PROBS.clone().requires_grad_()
    weights = torch.tensor([1.0, -2.0, 3.0])
    (gate(probs, probs.log(), "FS", True, uniforms_as_noise(FS_UNIFORMS)) * weights).sum().backward()
    assert torch.equal(probs.grad, weights.expand(1, 6, 3))


@pytest.mark.parametrize("training_mode", [True, False])
def test_fd_takes_the_argmax_always(training_mode):
    h = gate(FS_PROBS, FS_PROBS.log(), "FD", training_mode, uniforms_as_noise(FS_UNIFORMS))
    assert_one_hot(h, [[1] * 6])


@pytest.mark.parametrize("training_mode", [True, False])
def test_sd_is_p_itself(training_mode):
    assert gate(FS_PROBS, FS_PROBS.log(), "SD", training_mode, uniforms_as_noise(FS_UNIFORMS)) is FS_PROBS


def test_sd_mixes_the_dns_by_p():
    opts = opts_for("--decision_clu", "SD")
    model = tiny_model(opts).train()
    images = torch.randn(1, 4, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    log_probs, probs = model(images)
    z = model.encoder(images)
    expected = torch.log_softmax((probs.unsqueeze(-1) * model.dn(z)).sum(dim=2), dim=-1)
    assert torch.allclose(log_probs, expected, atol=1e-6)
    single = torch.log_softmax(model.dn(z)[:, :, 0], dim=-1)  # not one DN's output alone
    assert not torch.allclose(log_probs, single, atol=1e-3)


ZERO_GUMBEL = math.exp(-1)  # -log(-log(u)) = 0: no Gumbel noise


def test_gsf_at_a_low_temperature_without_noise_is_the_argmax_of_the_logits():
    logits = torch.tensor([[[1.0, 1.02, 0.5], [0.3, -0.1, 0.29]]])
    noise = torch.full((1, 2, 3), ZERO_GUMBEL)
    assert_one_hot(gate(logits.softmax(-1), logits, "GSF", True, noise, temperature=0.01), [[1, 0]])


def test_gsf_adds_gumbel_noise_to_the_logits():
    logits = torch.tensor([[[2.0, 1.0, 0.0]]])
    # Gumbel offsets -log(-log(u)): 0, 0 and -log(-log(0.999)) = 6.9 -> logits + g = 2, 1, 6.9.
    noise = torch.tensor([[[ZERO_GUMBEL, ZERO_GUMBEL, 0.999]]])
    assert_one_hot(gate(logits.softmax(-1), logits, "GSF", True, noise), [[2]])
    # In eval: the argmax of p, whatever the noise.
    assert_one_hot(gate(logits.softmax(-1), logits, "GSF", False, noise), [[0]])


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_gsf_backward_is_the_gradient_of_the_tempered_softmax(temperature):
    logits = torch.tensor([[[0.4, -0.3, 1.1]]], dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    noise = torch.full((1, 1, 3), ZERO_GUMBEL, dtype=torch.float64)
    h = gate(logits.softmax(-1), logits, "GSF", True, noise, temperature)
    assert_one_hot(h, [[2]])
    (h * weights).sum().backward()
    # d/dlogit_j sum_k w_k s_k, s = softmax(logits / T): s_j (w_j - sum_k s_k w_k) / T.
    s = [math.exp(x / temperature) for x in (0.4, -0.3, 1.1)]
    s = [x / sum(s) for x in s]
    mean_w = sum(a * b for a, b in zip(s, weights.tolist()))
    expected = [s_j * (w_j - mean_w) / temperature for s_j, w_j in zip(s, weights.tolist())]
    assert logits.grad[0, 0].tolist() == pytest.approx(expected, abs=1e-12)


def test_the_model_passes_its_temperature_to_the_gsf_gate():
    """The CN's last bias receives sum over images of s (g - s.g) / T, where g is the loss's
    gradient with respect to h and s the softmax of the CN's logits over T."""
    for temperature in (0.25, 1.0):
        opts = opts_for("--decision_clu", "GSF", "--temperature", temperature)
        model = tiny_model(opts).train()
        images = torch.randn(1, 5, 1, 12, 12, generator=torch.Generator().manual_seed(1))
        noise = torch.full((1, 5, 3), ZERO_GUMBEL)
        log_probs, _ = model(images, noise)
        log_probs[..., 1].sum().backward()
        with torch.no_grad():
            z = model.encoder(images)
            logits, experts = model.cn(z), model.dn(z)  # (1, B, K), (1, B, K, 2)
            chosen = experts.gather(2, logits.argmax(-1)[..., None, None].expand(1, 5, 1, 2)).squeeze(2)
            d_mixed = torch.tensor([0.0, 1.0]) - chosen.softmax(-1)  # d log_softmax(m)_1 / dm
            g = (experts * d_mixed.unsqueeze(2)).sum(-1)  # dL/dh_k
            s = (logits / temperature).softmax(-1)
            expected = (s * (g - (s * g).sum(-1, keepdim=True)) / temperature).sum(dim=1)
        assert torch.allclose(model.cn.layers[-1].bias.grad[0, 0], expected[0], atol=1e-6), temperature


def two_steps(opts, gradients=(1.0, 0.0)):
    """A one-number parameter at 1.0, stepped by make_optimiser with the given gradients."""
    parameter = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    optimiser = training.make_optimiser([parameter], opts)
    values = []
    for gradient in gradients:
        parameter.grad = torch.tensor([gradient], dtype=torch.float64)
        optimiser.step()
        values.append(parameter.item())
    return optimiser, values


def adam_by_hand(gradients, lr, amsgrad, beta1=0.9, beta2=0.999, eps=1e-8):
    value, m, v, v_max, values = 1.0, 0.0, 0.0, 0.0, []
    for t, g in enumerate(gradients, start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        v_max = max(v_max, v)
        second = v_max if amsgrad else v
        value -= lr * (m / (1 - beta1 ** t)) / (math.sqrt(second / (1 - beta2 ** t)) + eps)
        values.append(value)
    return values


def test_sgd_with_momentum_and_weight_decay():
    optimiser, values = two_steps(opts_for("--optim", "SGD", "--lr", 0.1, "--momentum", 0.5))
    assert type(optimiser) is torch.optim.SGD
    # Momentum buffer 1, then 0.5 * 1 + 0: 1 - 0.1, then 0.9 - 0.05.
    assert values == pytest.approx([0.9, 0.85], abs=1e-12)
    _, values = two_steps(opts_for("--optim", "SGD", "--lr", 0.1, "--momentum", 0, "--weight_decay", 0.5),
                          gradients=(0.0,))
    assert values == pytest.approx([1 - 0.1 * 0.5 * 1.0], abs=1e-12)  # the gradient gets 0.5 * weight


@pytest.mark.parametrize("optim, amsgrad", [("Adam", False), ("AMSGrad", True)])
def test_adam_and_amsgrad(optim, amsgrad):
    optimiser, values = two_steps(opts_for("--optim", optim, "--lr", 0.1))
    assert type(optimiser) is torch.optim.Adam and optimiser.defaults["amsgrad"] is amsgrad
    # The second gradient is 0, so the second-moment estimate falls: AMSGrad keeps its maximum.
    assert values == pytest.approx(adam_by_hand([1.0, 0.0], 0.1, amsgrad), abs=1e-12)
    assert values[1] != pytest.approx(adam_by_hand([1.0, 0.0], 0.1, not amsgrad)[1], abs=1e-7)
