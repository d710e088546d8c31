"""The representation ingredients of issue 17: NT-Xent on two views, the over-clustering
head's mutual information, the warm-up, the random resized crop; each against a value
worked by hand, and the heads' place in the model and the optimisers."""

import math
from types import SimpleNamespace

import pytest
import torch

from clustnet.augment import crop_matrices, random_crop, view_uniforms
from clustnet.losses import (GATE_TERMS, clustnet_loss_parts, grouped_mutual_information,
                             over_clustering_information, view_contrast)
from clustnet.model import ClustNet, GateOutputs, ModelConfig
from clustnet.options import parse_options
from clustnet.training import make_optimisers


def view(z, projection=None, over_probs=None, probs=None):
    probs = torch.full((len(z), 2), 0.5) if probs is None else probs
    return GateOutputs(None, probs, probs.log(), None, None, z, projection, over_probs)


def nt_xent_by_hand(first, second, temperature):
    """NT-Xent by loops over the 2n views: -log(exp(s_ip / t) / sum_{k != i} exp(s_ik / t))."""
    views = [[x / math.sqrt(sum(y * y for y in v)) for x in v] for v in first + second]
    n, total = len(first), 0.0
    for i, a in enumerate(views):
        sims = [sum(x * y for x, y in zip(a, b)) / temperature for b in views]
        partner = i + n if i < n else i - n
        total -= sims[partner] - math.log(sum(math.exp(s) for k, s in enumerate(sims) if k != i))
    return total / (2 * n)


def test_nt_xent_equals_the_hand_computed_value_on_the_projections():
    first = [[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]
    second = [[0.8, 0.6], [0.1, 1.0], [-1.0, 0.5]]
    unused_z = torch.zeros(3, 4)
    got = view_contrast(view(unused_z, torch.tensor(first)), view(unused_z, torch.tensor(second)), None,
                        SimpleNamespace(contrastive_temp=0.5)).item()
    assert got == pytest.approx(nt_xent_by_hand(first, second, 0.5), rel=1e-5)


def test_nt_xent_reads_z_without_a_projection_head_and_is_low_when_the_views_match():
    # Two images, each view identical to its partner and orthogonal to the other image:
    # each view's partner has similarity 1/t, the other two 0: -log(e^2 / (e^2 + 2)).
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    got = view_contrast(view(z), view(z.clone()), None, SimpleNamespace(contrastive_temp=0.5)).item()
    assert got == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 2)), rel=1e-6)


def test_over_clustering_term_is_the_grouped_information_of_the_auxiliary_head():
    # Group 1: two images, each sent confidently to its own one of 4 outputs by both views:
    # log 2; group 0: one output for both images: 0. The mean: log(2) / 2.
    over = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 1.0, 0]])
    targets = torch.tensor([1, 1, 0, 0])
    z = torch.zeros(4, 2)
    got = over_clustering_information(view(z, over_probs=over), view(z, over_probs=over), targets, None).item()
    assert got == pytest.approx(math.log(2) / 2, abs=1e-6)
    assert got == pytest.approx(grouped_mutual_information(over, over, targets).item())
    assert GATE_TERMS["overclust_iic"].sign == -1 and GATE_TERMS["contrastive"].sign == 1


def test_during_the_warm_up_only_the_representation_terms_count():
    opts = parse_options(["--group_divers", "3", "--contrastive", "2", "--warmup_epochs", "2"])
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    probs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    out = GateOutputs(torch.log(torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])), probs, probs.log(), None, None, z)
    targets = torch.tensor([[1, 1]])
    warm, parts = clustnet_loss_parts(out, out, targets, opts, epoch=2)
    full, _ = clustnet_loss_parts(out, out, targets, opts, epoch=3)
    contrast = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert warm.item() == pytest.approx(math.log(2) + 2 * contrast, rel=1e-5)
    assert full.item() == pytest.approx(math.log(2) + 2 * contrast - 3 * math.log(2), rel=1e-5)
    assert set(parts) == {"binary", "group_divers", "contrastive"}  # logged in the warm-up too


def test_the_crop_of_a_quarter_at_the_top_left_stretches_that_quarter():
    # An 8x8 ramp along x (value = column). A crop of area 1/4, ratio 1, at the top left maps
    # output column j to input column (j - 0.5) / 2 (bilinear: linear values are exact; the
    # border repeats column 0).
    image = torch.arange(8.0).repeat(8, 1).view(1, 1, 1, 8, 8)
    crop = random_crop(image, torch.tensor([[[1.0, 0.5, 0.0, 0.0]]]), SimpleNamespace(aug_crop=0.75))
    expected = [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25]
    assert crop[0, 0, 0, 0].tolist() == pytest.approx(expected, abs=1e-5)
    assert torch.allclose(crop[0, 0, 0, 7], crop[0, 0, 0, 0])  # rows unchanged along y
    # The largest crop (u = 0: the whole image) at ratio 1 is the image itself.
    whole = random_crop(image, torch.tensor([[[0.0, 0.5, 0.3, 0.9]]]), SimpleNamespace(aug_crop=0.75))
    assert torch.allclose(whole, image, atol=1e-5)


def test_crops_stay_inside_the_image_with_the_asked_areas():
    uniforms = torch.rand(1000, 4, generator=torch.Generator().manual_seed(0))
    theta = crop_matrices(uniforms, 0.2)
    width, height, x, y = theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2]
    assert (width * height >= 0.2 - 1e-6).all() and (width <= 1).all() and (height <= 1).all()
    assert ((x.abs() + width) <= 1 + 1e-6).all() and ((y.abs() + height) <= 1 + 1e-6).all()
    assert view_uniforms(parse_options(["--aug_crop", "0.5"])) == 4


def test_the_heads_exist_only_when_asked_and_learn_with_the_encoder():
    opts = parse_options(["--proj_size", "8", "--overclust", "25"])
    config = ModelConfig.from_options(opts, (1, 28, 28))
    model = ClustNet(2, config)
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    model.reset_parameters(generators)
    out = model.outputs(torch.randn(2, 3, 1, 28, 28), torch.rand(2, 3, 5))
    assert out.projection.shape == (2, 3, 8) and out.over_probs.shape == (2, 3, 25)
    assert torch.allclose(out.over_probs.sum(-1), torch.ones(2, 3))
    held = {name: {id(p) for group in o.param_groups for p in group["params"]}
            for name, o in make_optimisers(model, opts).items()}
    head_ids = {id(p) for head in model.heads() for p in head.parameters()}
    assert head_ids <= held["main"] and not head_ids & held["cn"]
    # Without them the model and its initial weights are the published one's.
    plain = ClustNet(1, ModelConfig.from_options(parse_options([]), (1, 28, 28)))
    plain.reset_parameters([torch.Generator().manual_seed(1)])
    assert plain.heads() == [] and plain.outputs(torch.randn(1, 2, 1, 28, 28), torch.rand(1, 2, 5)).projection is None
    with_heads = ClustNet(1, config)
    with_heads.reset_parameters([torch.Generator().manual_seed(1)])
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, with_heads.state_dict()[name]), name


@pytest.mark.parametrize("args, message", [
    (["--overclust_iic", "1"], "--overclust 2 or more"),
    (["--aug_crop", "1"], "--aug_crop 1.0: must be below 1.0"),
    (["--warmup_epochs", "2", "--clu_train_mode", "separated", "--batch_period", "1"], "--clu_train_mode joint"),
])
def test_inconsistent_representation_options_are_refused(args, message):
    from clustnet.errors import ClustNetError
    with pytest.raises(ClustNetError, match=message):
        parse_options(args)
