"""The research options on the gate (issue 11): each term against a hand-computed value,
nets of a --seeds run kept apart, the affine views, the separated mode's targets and schedule."""

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from clustnet.augment import (affine_matrices, quarter_turns, random_affine, random_colour, random_erase, random_flip,
                              random_jitter, random_view, view_uniforms)
from clustnet.losses import (gate_terms, group_balance, group_mutual_information, mined_neighbours,
                             neighbour_disagreement, equipartitioned, rotation_loss, scheduled_value, self_labelling, separated_cn_loss,
                             smallest_loss_experts, swapped_equipartition, view_disagreement, disagreement)
from clustnet.model import GateOutputs, ModelConfig

LOG2 = math.log(2)


def mutual_information_by_hand(p1, p2):
    """MI of the symmetrised joint sum_i (p1_i p2_i^T + p2_i p1_i^T) / 2, normalised, by loops."""
    k = len(p1[0])
    joint = np.zeros((k, k))
    for a, b in zip(p1, p2):
        for i in range(k):
            for j in range(k):
                joint[i, j] += (a[i] * b[j] + b[i] * a[j]) / 2
    joint /= joint.sum()
    rows, columns = joint.sum(axis=1), joint.sum(axis=0)
    return sum(joint[i, j] * math.log(joint[i, j] / (rows[i] * columns[j]))
               for i in range(k) for j in range(k) if joint[i, j] > 0)


def one_net(term, probs, other_probs, targets, **options):
    """A term's value on one net's tensors (B, ...), as gate_terms calls it: `other_probs`
    the CN's p on the second view, or None."""
    second = None if other_probs is None else outputs(other_probs)
    return term(outputs(probs), second, targets, SimpleNamespace(**options)).item()


def test_mutual_information_of_two_confident_views_is_log_k():
    # Group 1: two images, each sent confidently to its own DN by both views -> MI = log 2.
    # Group 0: two images with a uniform p -> MI = 0. The mean over the two groups: log(2) / 2.
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]])
    targets = torch.tensor([1, 1, 0, 0])
    assert one_net(group_mutual_information, p, p, targets) == pytest.approx(LOG2 / 2, abs=1e-6)


def test_mutual_information_equals_the_hand_computed_value():
    p1 = [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]
    p2 = [[0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]
    targets = torch.tensor([1, 1, 1])
    got = one_net(group_mutual_information, torch.tensor(p1), torch.tensor(p2), targets)
    # Only group 1 has images: the mean runs over the groups present.
    assert got == pytest.approx(mutual_information_by_hand(p1, p2), rel=1e-5)


def test_mutual_information_is_computed_within_each_group():
    # Across the groups the views agree perfectly, but inside each group every image goes
    # to the same DN: no information within a group.
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    targets = torch.tensor([1, 1, 0, 0])
    assert one_net(group_mutual_information, p, p, targets) == pytest.approx(0, abs=1e-6)


def test_group_balance_by_hand():
    # Group 1 spreads over both DNs (entropy log 2), group 0 uses one DN (entropy 0).
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    targets = torch.tensor([1, 1, 0, 0])
    assert one_net(group_balance, p, None, targets) == pytest.approx(LOG2 / 2, abs=1e-6)


def gate_options(**weights):
    """The default options (every term off), with the given weights."""
    from clustnet.options import parse_options
    opts = parse_options([])
    vars(opts).update(weights)
    return opts


def outputs(probs):
    return GateOutputs(log_probs=None, probs=probs, logits=torch.log(probs), hard=None, experts=None, z=None)


def test_gate_terms_are_subtracted_with_their_weights():
    p = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]])
    targets = torch.tensor([[1, 1, 0, 0]])
    opts = gate_options(iic=2.0, consistency=0.0, group_divers=0.0)
    assert gate_terms(outputs(p), outputs(p), targets, opts).item() == pytest.approx(-2 * LOG2 / 2, abs=1e-6)
    opts = gate_options(iic=0.0, consistency=0.0, group_divers=3.0)
    assert gate_terms(outputs(p), outputs(p), targets, opts).item() == pytest.approx(-3 * LOG2 / 2, abs=1e-6)
    opts = gate_options(iic=0.0, consistency=0.0, group_divers=0.0)
    assert gate_terms(outputs(p), outputs(p), targets, opts).item() == 0
    # Consistency: the second view sends image 0 half to each DN: -log(1 * 0.5) / 4 images.
    other = p.clone()
    other[0, 0] = torch.tensor([0.5, 0.5])
    opts = gate_options(iic=0.0, consistency=4.0, group_divers=0.0)
    assert gate_terms(outputs(p), outputs(other), targets, opts).item() == pytest.approx(4 * LOG2 / 4, abs=1e-6)


def test_seeds_nets_do_not_leak_into_each_others_terms():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 3, generator=generator, requires_grad=True)
    other = torch.randn(2, 6, 3, generator=generator).softmax(dim=-1)
    targets = torch.randint(0, 2, (2, 6), generator=generator)
    opts = gate_options(iic=1.0, consistency=0.7, group_divers=0.5)
    probs = logits.softmax(dim=-1)
    terms = gate_terms(outputs(probs), outputs(other), targets, opts)
    alone = gate_terms(outputs(probs[1:]), outputs(other[1:]), targets[1:], opts)
    assert terms[1].item() == pytest.approx(alone[0].item(), rel=1e-6)
    terms[0].backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0


def test_affine_views_rotate_and_shift_as_asked():
    image = torch.arange(16.0).view(1, 1, 1, 4, 4)
    quarter_turn = SimpleNamespace(aug_rotation=90, aug_shift=0, aug_scale=0)
    rotated = random_affine(image, torch.tensor([[[1.0, 0.5, 0.5, 0.5]]]), quarter_turn)
    assert torch.allclose(rotated[0, 0, 0], torch.rot90(image[0, 0, 0], 1, (0, 1)), atol=1e-5)
    # A shift of a quarter of the image: one pixel of 4, the border repeated.
    quarter_shift = SimpleNamespace(aug_rotation=0, aug_shift=0.25, aug_scale=0)
    shifted = random_affine(image, torch.tensor([[[0.5, 0.5, 1.0, 0.5]]]), quarter_shift)
    expected = torch.cat([image[0, 0, 0, :, 1:], image[0, 0, 0, :, 3:]], dim=1)
    assert torch.allclose(shifted[0, 0, 0], expected, atol=1e-5)
    # Uniforms of 0.5 are the identity, whatever the magnitudes.
    identity = affine_matrices(torch.full((1, 4), 0.5), 30, 0.2, 0.3)
    assert torch.allclose(identity, torch.tensor([[[1.0, 0, 0], [0, 1, 0]]]))


def test_jitter_scales_the_contrast_around_the_mean_then_shifts_the_brightness():
    image = torch.tensor([1.0, 2.0, 3.0, 6.0]).view(1, 1, 1, 2, 2)  # mean 3
    opts = SimpleNamespace(aug_jitter=0.5)
    # Uniforms (1, 0): contrast 1.5 around 3, brightness -0.5: 3 + 1.5 (x - 3) - 0.5.
    jittered = random_jitter(image, torch.tensor([[[1.0, 0.0]]]), opts)
    assert jittered.flatten().tolist() == pytest.approx([-0.5, 1.0, 2.5, 7.0])
    # Uniforms of 0.5: the image itself.
    assert torch.equal(random_jitter(image, torch.tensor([[[0.5, 0.5]]]), opts), image)


def test_erase_sets_a_square_of_the_given_side_to_zero_clipped_at_the_border():
    # A 4x4 image (pixel centres at 1/8, 3/8, 5/8, 7/8 of the side), a square of side 1/2:
    # centred at (1/2, 1/2) it erases the 4 middle pixels; at (7/8 + 0.02, 1/8 - 0.02), the
    # top-right corner, only the pixel whose centre is within 1/4 of it in both directions.
    image = torch.arange(1.0, 17.0).view(1, 1, 1, 4, 4)
    opts = SimpleNamespace(aug_erase=0.5)
    middle = random_erase(image, torch.tensor([[[0.5, 0.5]]]), opts)[0, 0, 0]
    assert middle.tolist() == [[1, 2, 3, 4], [5, 0, 0, 8], [9, 0, 0, 12], [13, 14, 15, 16]]
    corner = random_erase(image, torch.tensor([[[0.895, 0.105]]]), opts)[0, 0, 0]
    assert corner.tolist() == [[1, 2, 3, 0], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
    assert torch.equal(random_erase(image, torch.tensor([[[0.5, 0.5]]]), SimpleNamespace(aug_erase=1.0)),
                       torch.zeros_like(image))


def test_colour_turns_the_hue_about_the_grey_axis_scales_the_saturation_and_greys():
    # One pixel, pure red (1, 0, 0): grey 1/3, chroma (2/3, -1/3, -1/3).
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 3, 1, 1)
    # v = 4/3 and a hue uniform of 1: a turn of v/4 = 1/3 (120 degrees) takes red to green.
    turned = random_colour(red, torch.tensor([[[0.5, 1.0, 0.99]]]), SimpleNamespace(aug_colour=4 / 3))
    assert turned.flatten().tolist() == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)
    # v = 0.5, saturation uniform 0 (factor 0.5), no turn: grey + chroma / 2.
    halved = random_colour(red, torch.tensor([[[0.0, 0.5, 0.99]]]), SimpleNamespace(aug_colour=0.5))
    assert halved.flatten().tolist() == pytest.approx([2 / 3, 1 / 6, 1 / 6], abs=1e-6)
    # Grey uniform below v/2 = 0.25: the channels' mean in every channel.
    grey = random_colour(red, torch.tensor([[[1.0, 1.0, 0.2]]]), SimpleNamespace(aug_colour=0.5))
    assert grey.flatten().tolist() == pytest.approx([1 / 3] * 3, abs=1e-6)
    # Uniforms of 0.5 (and above the grey probability): the image itself; one channel: unchanged.
    assert torch.allclose(random_colour(red, torch.tensor([[[0.5, 0.5, 0.9]]]), SimpleNamespace(aug_colour=0.4)), red)
    digit = torch.rand(1, 1, 1, 4, 4)
    assert torch.equal(random_colour(digit, torch.zeros(1, 1, 3), SimpleNamespace(aug_colour=0.4)), digit)


def test_quarter_turns_turn_each_image_counter_clockwise_by_its_drawn_number_of_turns():
    image = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 1, 2, 2).expand(1, 4, 1, 2, 2)
    turned, turns = quarter_turns(image, torch.tensor([[0.1, 0.3, 0.6, 0.99]]))
    assert turns.tolist() == [[0, 1, 2, 3]]
    by_hand = [[[1, 2], [3, 4]], [[2, 4], [1, 3]], [[4, 3], [2, 1]], [[3, 1], [4, 2]]]
    assert turned[0, :, 0].tolist() == by_hand


def test_rotation_loss_is_the_heads_cross_entropy_at_the_drawn_turn():
    # A head that reads the 2x2 image's four pixels as the four logits: the logits of each
    # turned image are its pixels, the target its turn.
    model = SimpleNamespace(rotation_logits=lambda x: x.flatten(-3))
    image = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 1, 2, 2).expand(1, 4, 1, 2, 2)
    loss = rotation_loss(model, image, torch.tensor([[0.1, 0.3, 0.6, 0.99]]))
    # Turn k's pixels (1 2 3 4, 2 4 1 3, 4 3 2 1, 3 1 4 2) at place k: 1, 4, 2, 2.
    log_sum = math.log(sum(math.exp(v) for v in (1, 2, 3, 4)))
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(log_sum - (1 + 4 + 2 + 2) / 4, rel=1e-6)


def test_flip_mirrors_the_images_whose_uniform_is_below_the_probability():
    images = torch.arange(8.0).view(1, 2, 1, 2, 2)
    flipped = random_flip(images, torch.tensor([[[0.2], [0.7]]]), SimpleNamespace(aug_flip=0.5))
    assert flipped[0, 0, 0].tolist() == [[1.0, 0.0], [3.0, 2.0]]  # 0.2 < 0.5: mirrored
    assert torch.equal(flipped[0, 1], images[0, 1])  # 0.7: kept


def test_the_view_applies_every_transform_that_is_on_with_its_own_uniforms():
    """random_view draws the affine warp's 4 uniforms, then the jitter's 2; a transform whose
    options are all 0 is skipped and reads none."""
    image = torch.arange(16.0).view(1, 1, 1, 4, 4)
    both = SimpleNamespace(aug_rotation=90, aug_shift=0, aug_scale=0, aug_flip=0, aug_jitter=0.5, aug_crop=0, aug_colour=0, aug_erase=0)
    assert view_uniforms(both) == 6
    uniforms = torch.tensor([[[1.0, 0.5, 0.5, 0.5, 0.5, 1.0]]])  # a quarter turn, brightness +0.5
    expected = torch.rot90(image[0, 0, 0], 1, (0, 1)) + 0.5
    assert torch.allclose(random_view(image, uniforms, both)[0, 0, 0], expected, atol=1e-5)
    jitter_only = SimpleNamespace(aug_rotation=0, aug_shift=0, aug_scale=0, aug_flip=0, aug_jitter=0.5, aug_crop=0, aug_colour=0, aug_erase=0)
    assert view_uniforms(jitter_only) == 2
    assert torch.allclose(random_view(image, uniforms[..., 4:], jitter_only), image + 0.5)


def test_each_image_gets_its_own_view():
    images = torch.ones(2, 3, 1, 8, 8)
    images[..., 0:2, 0:2] = 5
    uniforms = torch.full((2, 3, 4), 0.5)
    uniforms[1, 2, 0] = 1.0  # only net 1's third image is rotated
    opts = SimpleNamespace(aug_rotation=90, aug_shift=0, aug_scale=0)
    views = random_affine(images, uniforms, opts)
    changed = (views - images).abs().flatten(2).amax(dim=2) > 1e-4
    assert changed.tolist() == [[False, False, False], [False, False, True]]


def test_smallest_loss_expert_and_separated_targets():
    # Two DNs; image 0 (target 1): DN 1 predicts 1 confidently; image 1 (target 0): DN 0 does.
    experts = torch.tensor([[[[0.0, -2.0], [0.0, 3.0]], [[2.0, 0.0], [0.0, 1.0]]]])
    targets = torch.tensor([[1, 0]])
    assert smallest_loss_experts(experts, targets).tolist() == [[1, 0]]
    logits = torch.tensor([[[0.0, math.log(3)], [math.log(3), 0.0]]])  # p = (1/4, 3/4), (3/4, 1/4)
    out = GateOutputs(log_probs=None, probs=logits.softmax(-1), logits=logits, hard=None, experts=experts, z=None)
    # share 1: targets are the smallest-loss DNs (1, 0), each of probability 3/4.
    uniforms = torch.tensor([[[0.3, 0.9], [0.6, 0.9]]])
    assert separated_cn_loss(out, targets, uniforms, 1.0).item() == pytest.approx(-math.log(0.75), rel=1e-6)
    # share 0: targets are drawn from column 1: 0.9 * 2 -> DN 1 for both (3/4 and 1/4).
    expected = -(math.log(0.75) + math.log(0.25)) / 2
    assert separated_cn_loss(out, targets, uniforms, 0.0).item() == pytest.approx(expected, rel=1e-6)
    # share 0.5: image 0 (u = 0.3) smallest-loss DN 1, image 1 (u = 0.6) random DN 1.
    assert separated_cn_loss(out, targets, uniforms, 0.5).item() == pytest.approx(expected, rel=1e-6)


def test_schedule_is_the_published_one():
    values, epochs = [0.9, 0.5, 0.1], [0, 1, 2]
    assert [scheduled_value(values, epochs, e) for e in (0, 1, 2, 5)] == [0.9, 0.5, 0.1, 0.1]
    assert scheduled_value([0.2, 1.0], [2, 6], 1) == 0.2
    assert scheduled_value([0.2, 1.0], [2, 6], 4) == pytest.approx(0.6)


def write_separable_mnist(root, n_per_class):
    """An MNIST layout whose 10 classes are a bright square each at its own place, 28x28."""
    from conftest import class_images, write_idx
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, seed in (("train", 0), ("t10k", 1)):
        images, labels = class_images(n_per_class, seed=seed)
        order = np.random.default_rng(seed).permutation(len(labels))
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images[order, 0])
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels[order])
    return root


def last_test_accuracies(stdout):
    import re
    rows = re.findall(r"net (\d+) epoch (\d+): .*test loss \S+ binary (\S+)% pos (\S+)% neg (\S+)%", stdout)
    last = max(int(r[1]) for r in rows)
    return [tuple(float(v) for v in r[2:]) for r in rows if int(r[1]) == last]


@pytest.mark.slow
def test_views_and_balance_find_the_subclasses_of_a_generated_dataset(tmp_path):
    from conftest import TINY, run_cli
    data = write_separable_mnist(tmp_path / "data", 100)
    found = run_cli("trainVal.py", "-c", "clust_best.config", "--exp_id", "views", "--data_dir", data,
                    "--batch_size", "50", "--epochs", "8", "--lr", "0.003", "--seeds", "1", "2",
                    "--aug_rotation", "5", "--aug_shift", "0.02", "--cn_binary_grad", "False", "--val_size", "0",
                    *TINY)
    assert found.returncode == 0, found.stderr
    for binary, pos, neg in last_test_accuracies(found.stdout):
        assert binary > 95 and pos > 90 and neg > 90, found.stdout


def tiny_model_and_batch(*argv):
    from clustnet.model import ClustNet
    from clustnet.options import parse_options
    from clustnet.training import make_optimisers
    opts = parse_options(["--encnbfilters", "2", "--enchidd_repr_size", "8", "--clhidd_repr_size", "8",
                          "--clust", "3", *argv])
    generators = [torch.Generator().manual_seed(seed) for seed in (1, 2)]
    model = ClustNet(2, ModelConfig.from_options(opts, (1, 16, 16)))
    model.reset_parameters(generators)
    images = torch.randn(16, 1, 16, 16, generator=generators[0])
    targets = torch.arange(16) % 2
    return opts, model, make_optimisers(model, opts), images, targets, generators


def test_without_binary_grad_the_cn_learns_from_its_own_terms_only():
    opts, model, _, images, targets, _ = tiny_model_and_batch("--cn_binary_grad", "False")
    log_probs, _ = model(images.expand(2, *images.shape), torch.rand(2, 16, 3))
    (-log_probs[..., 1].sum()).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.cn_parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder_dn_parameters())


def test_separated_mode_trains_the_cn_on_its_targets_in_its_turns():
    from clustnet.training import train_epoch
    opts, model, optimisers, images, targets, generators = tiny_model_and_batch(
        "--clu_train_mode", "separated", "--batch_period", "1", "--batch_size", "8", "--progress", "False",
        "--rand_prop_val_sched", "1", "--rand_prop_epo_sched", "0")
    cn_names = {name for name, _ in model.named_parameters() if name.startswith("cn.")}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    # One batch: the CN's turn, which steps the CN alone.
    train_epoch(model, optimisers, images[:8], targets[:8], generators, opts, 1)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == cn_names
    # Two batches: the CN's turn, then the encoder's and DNs' turn.
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_epoch(model, optimisers, images, targets, generators, opts, 1)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == set(before)


def test_the_default_training_step_is_still_the_published_one():
    """With every research option off, an epoch equals the published step written out by
    hand: the same random draws (order, then gate uniforms; nothing more), the binary NLL
    alone, both optimisers stepping together."""
    from clustnet.training import nll, train_epoch
    opts, model, optimisers, images, targets, generators = tiny_model_and_batch(
        "--batch_size", "4", "--progress", "False")
    _, reference, reference_optimisers, _, _, reference_generators = tiny_model_and_batch(
        "--batch_size", "4", "--progress", "False")
    train_epoch(model, optimisers, images, targets, generators, opts, 1)
    order = torch.stack([torch.randperm(16, generator=g) for g in reference_generators])
    noise = torch.stack([torch.rand(16, 3, generator=g) for g in reference_generators])
    reference.train()
    for start in range(0, 16, 4):
        index = order[:, start:start + 4]
        log_probs, _ = reference(images[index], noise[:, start:start + 4])
        reference.zero_grad()
        nll(log_probs, targets[index]).sum().backward()
        for optimiser in reference_optimisers.values():
            optimiser.step()
    for (name, trained), expected in zip(model.named_parameters(), reference.parameters()):
        assert torch.allclose(trained, expected, atol=1e-6), name


RESEARCH = ["--aug_rotation", "10", "--aug_shift", "0.05", "--aug_scale", "0.1", "--iic", "0.5", "--neighbours", "0.5",
            "--consistency", "1", "--group_divers", "1", "--self_label", "1", "--self_label_threshold", "0.3",
            "--self_label_from", "2",
            "--cn_binary_grad", "False", "--aug_crop", "0.3", "--contrastive", "1", "--proj_size", "8",
            "--overclust", "10", "--overclust_iic", "1", "--warmup_epochs", "1", "--cn_heads", "2",
            "--clean_view", "True", "--enc_block", "conv3bn", "--encnblayers", "3", "--rotation_pred", "1",
            "--sinkhorn", "1", "--sinkhorn_temp", "0.5", "--sinkhorn_from", "2", "--group_divers_until", "1",
            "--sinkhorn_iters", "3", "--neighbours_k", "3", "--aug_erase", "0.3", "--consistency_grad", "confident",
            "--consistency_confidence", "0.4"]
# RotNet's head on the maps, with the terms that read the gate continuously. Not with --neighbours:
# its nearest neighbour in z is an argmin, and with the rotation term off z a tiny net's z holds
# near ties that the grouped convolution's last-bit rounding (nets side by side or alone) flips.
RESEARCH_MAPS = ["--aug_rotation", "10", "--aug_shift", "0.05", "--consistency", "1", "--group_divers", "1",
                 "--cn_heads", "2", "--clean_view", "True", "--enc_block", "conv3bn", "--encnblayers", "3",
                 "--rotation_pred", "1", "--rotation_reads", "maps", "--consistency_grad", "cn",
                 "--consistency_encoder_share", "0.5", "--consistency_grad_until", "1"]


# The heads with their own z (no projection or over-clustering head: they read one z per net).
RESEARCH_OWN_Z = ["--aug_rotation", "10", "--aug_shift", "0.05", "--consistency", "1", "--group_divers", "1",
                  "--cn_heads", "3", "--heads_own_z", "True", "--clean_view", "True", "--contrastive", "1",
                  "--self_label", "1", "--self_label_threshold", "0.3", "--self_label_from", "2",
                  "--weight_ema", "0.9", "--teacher_consistency", "0.5", "--consistency_grad", "dense"]


@pytest.mark.slow
@pytest.mark.parametrize("research", [RESEARCH, RESEARCH_MAPS, RESEARCH_OWN_Z],
                         ids=["every_term", "rotation_on_maps", "heads_own_z"])
def test_seeds_train_with_every_gate_term_as_if_alone(research, mnist_dir, output_root):
    from conftest import TINY, run_cli
    from clustnet.layout import Experiment
    for exp_id, seeds in (("pair", ["--seeds", "1", "2"]), ("alone", ["--seed", "2"])):
        result = run_cli("trainVal.py", "-c", "clust.config", "--exp_id", exp_id, "--epochs", "2",
                         "--data_dir", mnist_dir, "--batch_size", "8", *TINY, *research, *seeds)
        assert result.returncode == 0, result.stderr
    beside, single = (torch.load(Experiment(e, root=output_root).weights_path(i, 2), weights_only=False)
                      for e, i in (("pair", 2), ("alone", 1)))
    for weights in ("model", "model_ema") if "--weight_ema" in research else ("model",):
        for name in single[weights]:
            assert torch.allclose(beside[weights][name], single[weights][name], rtol=0, atol=1e-5), (weights, name)


def test_neighbour_term_pairs_each_image_with_its_nearest_in_z_within_its_group():
    # Group 0: images 0, 1, 2; image 1 is nearest to 0 (cosine 0.99), and 0 to 1; image 2
    # (cosines 0 and 0.11) picks 1. Image 3 is alone in group 1 and counts 0.
    z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [1.0, 0.0]])
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [1.0, 0.0]])
    out = GateOutputs(log_probs=None, probs=probs, logits=torch.log(probs), hard=None, experts=None, z=z)
    value = neighbour_disagreement(out, None, torch.tensor([0, 0, 0, 1]), None).item()
    assert value == pytest.approx((-2 * math.log(0.5) - math.log(0.2 * 0.9 + 0.8 * 0.1)) / 3, abs=1e-6)


def test_mined_neighbours_are_the_nearest_other_images_of_the_same_group():
    # Group 0: images 0-2; cosines (0, 1) = .9 / sqrt(.82) = .994, (0, 2) = 0, (1, 2) = .1 / sqrt(.82)
    # = .110. Group 1: images 3-5; (3, 4) = .525 / (1.00125 x .7071) = .742, (3, 5) = -.999,
    # (4, 5) = -.707. An image is never its own neighbour, nor one of the other group's.
    z = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [1.0, 0.05], [0.5, 0.5], [-1.0, 0.0]])
    targets = torch.tensor([0, 0, 0, 1, 1, 1])
    expected = torch.tensor([[1, 2], [0, 2], [1, 0], [4, 5], [3, 5], [4, 3]])
    assert torch.equal(mined_neighbours(z, targets, 2), expected)
    assert torch.equal(mined_neighbours(z, targets, 2, chunk=2), expected)  # the rows in chunks
    assert torch.equal(mined_neighbours(z, targets, 1), expected[:, :1])


def test_neighbour_term_with_mined_neighbours_is_the_mean_disagreement_with_them():
    # p and the neighbours' p: (.5, .5) with (.5, .5), .5; (.9, .1) with (.2, .8), .18 + .08 = .26.
    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    out = GateOutputs(log_probs=None, probs=probs, logits=torch.log(probs), hard=None, experts=None, z=None,
                      neighbour_probs=torch.tensor([[0.5, 0.5], [0.2, 0.8]]))
    value = neighbour_disagreement(out, None, torch.tensor([0, 0]), None).item()
    assert value == pytest.approx(-(math.log(0.5) + math.log(0.26)) / 2, abs=1e-6)


def test_each_net_draws_its_neighbours_among_its_own_k_nearest_in_its_z():
    from clustnet.training import drawn_neighbours
    opts, model, _, images, targets, generators = tiny_model_and_batch("--neighbours", "1", "--neighbours_k", "3")
    partners = drawn_neighbours(model, images, targets, generators, opts)
    with torch.no_grad():
        model.eval()
        z = model.encoder(images.expand(2, *images.shape))
    for net in range(2):
        table = mined_neighbours(z[net], targets, 3)
        assert (partners[net].unsqueeze(1) == table).any(dim=1).all()
        assert torch.equal(targets[partners[net]], targets)
        assert (partners[net] != torch.arange(16)).all()


def test_self_labelling_uses_the_confident_choices_of_the_other_view_only():
    probs = torch.tensor([[0.75, 0.25], [0.75, 0.25], [0.2, 0.8]])
    other = torch.tensor([[0.995, 0.005], [0.6, 0.4], [0.001, 0.999]])
    # Images 0 and 2 are confident (labels 0 and 1), image 1 is not: (-log .75 - log .8) / 2.
    expected = -(math.log(0.75) + math.log(0.8)) / 2
    assert one_net(self_labelling, probs, other, None, self_label_threshold=0.99) == pytest.approx(expected, rel=1e-6)
    assert one_net(self_labelling, probs, other, None, self_label_threshold=0.9999) == 0


def test_equipartition_fills_every_dn_equally_within_each_group():
    # Group 0 holds images 0 and 1, p = (.8, .2) and (.6, .4): the 2x2 matrix with rows and
    # columns summing to 1 and the cross ratio of p, q11 q22 / (q12 q21) = (.8 * .4) / (.2 * .6)
    # = 8/3, is [[a, 1 - a], [1 - a, a]] with a / (1 - a) = sqrt(8/3). From p ** 2 (temperature
    # 1/2) the cross ratio is (8/3) ** 2, so a / (1 - a) = 8/3, a = 8/11. Image 2, alone in
    # group 1, fills both DNs of its group: (.5, .5) whatever its p.
    probs = torch.tensor([[0.8, 0.2], [0.6, 0.4], [0.9, 0.1]])
    targets = torch.tensor([0, 0, 1])
    for temp, ratio in ((1.0, math.sqrt(8 / 3)), (0.5, 8 / 3)):
        a = ratio / (1 + ratio)
        expected = torch.tensor([[a, 1 - a], [1 - a, a], [0.5, 0.5]])
        assert torch.allclose(equipartitioned(probs, targets, temp, 10), expected, atol=1e-4), temp


def test_one_sinkhorn_iteration_divides_by_the_dns_sums_then_normalises_each_image():
    # Group 0: p = (.8, .2), (.6, .4); the DNs' sums 1.4 and .6, each DN's share 1: (4/7, 1/3) and
    # (3/7, 2/3), rows normalised: (12/19, 7/19) and (9/23, 14/23).
    probs = torch.tensor([[0.8, 0.2], [0.6, 0.4]])
    expected = torch.tensor([[12 / 19, 7 / 19], [9 / 23, 14 / 23]])
    assert torch.allclose(equipartitioned(probs, torch.tensor([0, 0]), 1.0, 1), expected, atol=1e-6)


# Two images of group 1, K = 2. View 1: (.8, .2), (.6, .4), whose targets are
# [[a, 1 - a], [1 - a, a]] (the test above); view 2: (.5, .5) and (.5, .5), whose targets are
# the same (.5, .5). --sinkhorn's term: (CE of view 2 with view 1's targets: log 2 for each image
# + CE of view 1 with (.5, .5): -(log .8 + log .2) / 2 and -(log .6 + log .4) / 2, averaged) / 2.
SWAPPED_VIEW_1 = [[0.8, 0.2], [0.6, 0.4]]
SWAPPED_TERM = (math.log(2) - (math.log(0.8) + math.log(0.2) + math.log(0.6) + math.log(0.4)) / 4) / 2


def test_swapped_equipartition_is_each_views_cross_entropy_with_the_others_targets():
    probs = torch.tensor(SWAPPED_VIEW_1)
    other = torch.full((2, 2), 0.5)
    value = one_net(swapped_equipartition, probs, other, torch.tensor([1, 1]), sinkhorn_temp=1.0, sinkhorn_iters=10)
    assert value == pytest.approx(SWAPPED_TERM, rel=1e-5)


def test_self_labelling_counts_from_its_start_epoch_on_and_is_logged_before():
    # Two images of group 1; view 2 is confident (DN 1, then DN 2), view 1 is at 0.75 / 0.8 on
    # those DNs: the term is (-log .75 - log .8) / 2; the binary NLL is log 2.
    from clustnet.losses import clustnet_loss_parts
    from clustnet.options import parse_options
    probs = torch.tensor([[[0.75, 0.25], [0.2, 0.8]]])
    other = torch.tensor([[[0.995, 0.005], [0.001, 0.999]]])
    half = torch.log(torch.full((1, 2, 2), 0.5))
    out, second = (GateOutputs(half, p, p.log(), None, None, None) for p in (probs, other))
    targets = torch.tensor([[1, 1]])
    opts = parse_options(["--self_label", "2", "--self_label_from", "3", "--warmup_epochs", "1"])
    term = -(math.log(0.75) + math.log(0.8)) / 2
    with_term = math.log(2) + 2 * term
    for epoch, expected in ((1, math.log(2)), (2, math.log(2)), (3, with_term), (None, with_term)):
        loss, parts = clustnet_loss_parts(out, second, targets, opts, epoch)
        assert loss.item() == pytest.approx(expected, rel=1e-6), epoch
        assert parts["self_label"].item() == pytest.approx(term, rel=1e-6)


def test_sinkhorn_takes_over_from_the_balance_at_its_epochs():
    # The example of SWAPPED_TERM: the balance is the entropy of view 1's mean p (.7, .3). With
    # --group_divers_until 2 --sinkhorn_from 3 the loss is log 2 - 5 H(.7, .3) at epochs 1-2 and
    # log 2 + SWAPPED_TERM from epoch 3 on; both terms are logged every epoch.
    from clustnet.losses import clustnet_loss_parts
    from clustnet.options import parse_options
    probs = torch.tensor([SWAPPED_VIEW_1])
    other = torch.full((1, 2, 2), 0.5)
    half = torch.log(torch.full((1, 2, 2), 0.5))
    out, second = (GateOutputs(half, p, p.log(), None, None, None) for p in (probs, other))
    targets = torch.tensor([[1, 1]])
    opts = parse_options(["--group_divers", "5", "--group_divers_until", "2", "--sinkhorn", "1",
                          "--sinkhorn_from", "3"])
    balance = -(0.7 * math.log(0.7) + 0.3 * math.log(0.3))
    sinkhorn = SWAPPED_TERM
    for epoch, expected in ((1, math.log(2) - 5 * balance), (2, math.log(2) - 5 * balance),
                            (3, math.log(2) + sinkhorn), (10, math.log(2) + sinkhorn)):
        loss, parts = clustnet_loss_parts(out, second, targets, opts, epoch)
        assert loss.item() == pytest.approx(expected, rel=1e-5), epoch
        assert parts["group_divers"].item() == pytest.approx(balance, rel=1e-5)
        assert parts["sinkhorn"].item() == pytest.approx(sinkhorn, rel=1e-5)
    always = parse_options(["--group_divers", "5"])
    assert clustnet_loss_parts(out, second, targets, always, 10)[0].item() == pytest.approx(
        math.log(2) - 5 * balance, rel=1e-5)


def test_the_benchmark_times_the_step_of_both_configs():
    from clustnet.benchmarking import gate_terms_cost
    table = gate_terms_cost([8, 16], 64, torch.device("cpu"))
    assert list(table.columns) == ["batch_size", "published_step_ms", "clust_best_step_ms", "previous_step_ms",
                                   "representation_step_ms", "x_published", "x_previous", "representation_x_clust_best"]
    assert table.batch_size.tolist() == [8, 16] and (table.drop(columns="batch_size") > 0).all().all()
    assert np.allclose(table.x_published, table.clust_best_step_ms / table.published_step_ms)
    assert np.allclose(table.x_previous, table.clust_best_step_ms / table.previous_step_ms)


def test_with_clean_view_the_binary_loss_reads_the_images_and_the_terms_an_augmented_view():
    from clustnet.training import train_epoch
    seen = {}
    for clean in ("True", "False"):
        opts, model, optimisers, images, targets, generators = tiny_model_and_batch(
            "--batch_size", "16", "--progress", "False", "--aug_rotation", "30", "--consistency", "1",
            "--clean_view", clean)
        first, second = model.outputs, model.view_outputs
        model.outputs = lambda x, noise=None, **kw: seen.setdefault((clean, 0), x) is not None and first(x, noise, **kw)
        model.view_outputs = lambda x: seen.setdefault((clean, 1), x) is not None and second(x)
        train_epoch(model, optimisers, images, targets, generators, opts, 1)

    def is_an_image(views):  # (N, B, ...) -> whether each is exactly one of the 16 images
        distances = torch.cdist(views.flatten(2), images.flatten(1).expand(len(views), -1, -1))
        return distances.min(dim=-1).values == 0
    assert is_an_image(seen[("True", 0)]).all()  # view 1: the images themselves, in each net's order
    assert not is_an_image(seen[("False", 0)]).any() and not is_an_image(seen[("True", 1)]).any()
    assert torch.equal(seen[("True", 1)], seen[("False", 1)])  # the same draws: view 2 unchanged


def test_rotation_prediction_refuses_images_that_are_not_square():
    from clustnet.errors import ClustNetError
    from clustnet.options import parse_options
    from clustnet.training import check_against_data
    opts = parse_options(["--rotation_pred", "1"])
    wide = SimpleNamespace(classes=list(range(10)), train_x=torch.zeros(2, 1, 28, 32))
    with pytest.raises(ClustNetError, match="needs square images, not 28x32"):
        check_against_data(opts, wide)
    check_against_data(opts, SimpleNamespace(classes=list(range(10)), train_x=torch.zeros(2, 1, 28, 28)))


def test_rotation_head_on_the_maps_trains_the_conv_blocks_and_not_z():
    # --rotation_reads maps: on 28x28 images the published encoder's last block holds 32 maps
    # of 4x4 ((28 - 4) / 2 = 12, (12 - 4) / 2 = 4), the head's input; the dense layer to z
    # gets no gradient from the term, the conv blocks do. Reading z, the dense layer learns too.
    from clustnet.model import ClustNet
    from clustnet.options import parse_options
    for reads, z_learns in (("maps", False), ("z", True)):
        opts = parse_options(["--rotation_pred", "1", "--rotation_reads", reads])
        model = ClustNet(1, ModelConfig.from_options(opts, (1, 28, 28)))
        model.reset_parameters([torch.Generator().manual_seed(0)])
        assert model.rotation_head.layers[0].weight.shape[1] == (32 * 4 * 4 if reads == "maps" else 64)
        rotation_loss(model, torch.rand(1, 8, 1, 28, 28), torch.rand(1, 8)).sum().backward()
        assert (model.encoder.dense.weight.grad is not None) == z_learns
        assert model.encoder.conv_weights[0].grad.abs().sum() > 0


@pytest.mark.parametrize("heads", [[], ["--cn_heads", "2", "--heads_own_z", "True"]], ids=["one_head", "own_z"])
def test_consistency_grad_sets_how_far_view_1s_gradient_reaches(heads):
    """--consistency_grad changes the gradient, never the value: cut_probs is p itself. With
    view 2's p fixed, the term's gradient through view 1 reaches the CN and the encoder (both),
    the CN alone, by the same amount (cn: only z is cut), the CN and the dense layer to z by
    the same amount, the conv blocks not (dense: the maps are cut), or nothing (view2)."""
    opts, model, _, images, targets, _ = tiny_model_and_batch(*heads)
    n_heads = opts.cn_heads
    model.train()
    view1 = images.expand(2, *images.shape).clone().requires_grad_(True)
    noise = torch.rand(2, 16, 3 * n_heads)
    second = model.view_outputs(images.flip(-1).expand(2, *images.shape))
    fixed = dataclasses.replace(second, probs=second.probs.detach())
    dense = list(model.encoder.dense.parameters())
    grads = {}
    for mode, cut in (("both", None), ("cn", "z"), ("dense", "maps"), ("view2", None)):
        out = model.outputs(view1, noise, cut=cut)
        if cut:
            assert torch.allclose(out.cut_probs, out.probs)
        opts.consistency_grad = mode
        value = view_disagreement(out, fixed, targets, opts)
        assert value.item() == pytest.approx(-torch.log((out.probs * fixed.probs).sum(dim=-1)).mean().item(),
                                             rel=1e-6)
        if mode == "view2":
            assert not value.requires_grad
            continue
        grads[mode] = torch.autograd.grad(value, [view1, *dense, *model.cn_parameters()], allow_unused=True)
    assert grads["both"][0].abs().sum() > 0 and grads["cn"][0] is None and grads["dense"][0] is None
    assert all(grad is None for grad in grads["cn"][1:1 + len(dense)])
    for both, cut in zip(grads["both"][1:], grads["dense"][1:]):  # the dense layer's and the CN's
        assert cut.abs().sum() > 0 and torch.allclose(both, cut, atol=1e-7)
    for both, cut in zip(grads["both"][1 + len(dense):], grads["cn"][1 + len(dense):]):  # the CN's
        assert cut.abs().sum() > 0 and torch.allclose(both, cut, atol=1e-7)


def test_consistency_encoder_share_scales_the_encoders_gradient_only():
    """--consistency_grad cn --consistency_encoder_share 0.25: with view 2's p fixed, the
    term's value is p's, the CN's gradient is SCAN's (both), and the image's (the encoder's
    way) is a quarter of SCAN's."""
    opts, model, _, images, targets, _ = tiny_model_and_batch("--consistency_grad", "cn")
    model.train()
    view1 = images.expand(2, *images.shape).clone().requires_grad_(True)
    noise = torch.rand(2, 16, 3)
    fixed = model.view_outputs(images.flip(-1).expand(2, *images.shape))
    fixed = dataclasses.replace(fixed, probs=fixed.probs.detach())
    grads = {}
    for mode, share in (("both", 0.0), ("cn", 0.25)):
        opts.consistency_grad, opts.consistency_encoder_share = mode, share
        out = model.outputs(view1, noise, cut="z", encoder_share=share)
        value = view_disagreement(out, fixed, targets, opts)
        assert value.item() == pytest.approx(-torch.log((out.probs * fixed.probs).sum(dim=-1)).mean().item())
        grads[mode] = torch.autograd.grad(value, [view1, *model.cn_parameters()])
    assert grads["both"][0].abs().sum() > 0
    assert torch.allclose(grads["cn"][0], 0.25 * grads["both"][0], atol=1e-9)
    for both, cn in zip(grads["both"][1:], grads["cn"][1:]):
        assert torch.allclose(both, cn, atol=1e-7)


@pytest.mark.parametrize("heads", [[], ["--cn_heads", "2", "--heads_own_z", "True"]], ids=["one_head", "own_z"])
def test_consistency_grad_confident_is_both_for_confident_images_and_cn_for_the_others(heads):
    """--consistency_grad confident, the threshold at the median of the CN's largest p: with
    view 2's p fixed, the term's value is p's, the CN's gradient is SCAN's (both), and the
    images' gradient (the encoder's way) is that of SCAN's term summed over the confident
    (net or head, image) pairs only; threshold 0 gives SCAN's, a threshold above every p none
    (cn)."""
    opts, model, _, images, targets, _ = tiny_model_and_batch("--consistency_grad", "confident", *heads)
    model.train()
    view1 = images.expand(2, *images.shape).clone().requires_grad_(True)
    noise = torch.rand(2, 16, 3 * opts.cn_heads)
    fixed = model.view_outputs(images.flip(-1).expand(2, *images.shape))
    fixed = dataclasses.replace(fixed, probs=fixed.probs.detach())
    out = model.outputs(view1, noise, cut="z")
    largest = out.probs.detach().amax(dim=-1)  # (nets x heads, B)
    threshold = largest.median().item()
    confident = (largest >= threshold).to(largest.dtype)
    assert 0 < confident.mean() < 1
    expected_image = torch.autograd.grad((disagreement(out.probs, fixed.probs) * confident).mean(), view1,
                                         retain_graph=True)[0]
    scans = torch.autograd.grad(disagreement(out.probs, fixed.probs).mean(), [view1, *model.cn_parameters()])
    for confidence, image in ((threshold, expected_image), (0.0, scans[0]), (1.0, None)):
        opts.consistency_confidence = confidence
        out = model.outputs(view1, noise, cut="z")
        value = view_disagreement(out, fixed, targets, opts)
        assert value.item() == pytest.approx(disagreement(out.probs, fixed.probs).mean().item(), rel=1e-6)
        grads = torch.autograd.grad(value, [view1, *model.cn_parameters()], allow_unused=True)
        if image is None:
            assert grads[0] is None or grads[0].abs().sum() == 0
        else:
            assert grads[0].abs().sum() > 0 and torch.allclose(grads[0], image, atol=1e-9)
        for cn_scans, cn_ours in zip(scans[1:], grads[1:]):
            assert cn_ours.abs().sum() > 0 and torch.allclose(cn_scans, cn_ours, atol=1e-7)
    assert not torch.allclose(expected_image, scans[0], atol=1e-9)


def test_outside_consistency_grad_from_and_until_the_gradient_is_scans():
    """One epoch from the same weights: at epoch 2 with --consistency_grad view2
    --consistency_grad_until 1 the step is SCAN's (both) exactly, at epoch 1 it is not; with
    --consistency_grad_from 2 the other way round."""
    from clustnet.training import train_epoch

    def weights_after(epoch, *grad):
        opts, model, optimisers, images, targets, generators = tiny_model_and_batch(
            "--batch_size", "16", "--aug_rotation", "10", "--consistency", "1", "--clean_view", "True", *grad)
        train_epoch(model, optimisers, images, targets, generators, opts, epoch)
        return torch.cat([param.detach().flatten() for param in model.parameters()])

    scheduled = ("--consistency_grad", "view2", "--consistency_grad_until", "1")
    assert torch.equal(weights_after(2, *scheduled), weights_after(2))
    assert not torch.allclose(weights_after(1, *scheduled), weights_after(1))
    delayed = ("--consistency_grad", "view2", "--consistency_grad_from", "2")
    assert torch.equal(weights_after(1, *delayed), weights_after(1))
    assert not torch.allclose(weights_after(2, *delayed), weights_after(2))
