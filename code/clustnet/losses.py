"""Loss terms on the gate beyond the published method, each returning (N,): one value per net.

Tensors are (N nets, B images, ...). Every reduction here runs over the images (dim 1) or
the experts, never over the nets (dim 0), so the nets of a `--seeds` run never mix; the
tests check it. The binary target splits a batch into two groups (0: negative, 1: positive);
the terms act within each group, since the classes to discover live inside one group.
"""

import torch
import torch.nn.functional as F

TINY = 1e-12


def entropy(probs, dim=-1):
    return -(probs * torch.log(probs.clamp_min(TINY))).sum(dim=dim)


def image_nll(log_probs, labels):
    """(..., C) log-probabilities, (...) labels -> (...) each one's negative log-likelihood."""
    return -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def nll(log_probs, targets):
    """(N, B, C) log-probabilities, (N, B) targets -> (N,) mean negative log-likelihood."""
    return image_nll(log_probs, targets).mean(dim=1)


def group_masks(targets):
    """(N, B) binary targets -> (N, B, 2) floats: column g marks the images of group g."""
    return F.one_hot(targets, 2).to(torch.float32)


def mean_over_present_groups(values, masks):
    """(N, 2) a value per group -> (N,) their mean over the groups that have images in the
    batch (at batch size 4 a group is often absent)."""
    present = (masks.sum(dim=1) > 0).to(values.dtype)
    return (values * present).sum(dim=1) / present.sum(dim=1).clamp_min(1)


def group_balance(probs, targets):
    """(N,) mean over the groups of the entropy of the group's mean p in the batch: high
    when each group spreads over all the DNs."""
    masks = group_masks(targets)
    sums = torch.einsum("nbg,nbk->ngk", masks, probs)
    means = sums / masks.sum(dim=1).unsqueeze(-1).clamp_min(1)
    return mean_over_present_groups(entropy(means), masks)


def group_mutual_information(probs, other_probs, targets):
    """(N,) mean over the two groups of the mutual information between the gate's choice on
    two views of the same images (Invariant Information Clustering, Ji et al. 2019): the
    joint distribution of (DN for view 1, DN for view 2) over the group's images of the
    batch, symmetrised; MI = sum P log(P / (P_i P_j)). High when both views of an image go
    to the same DN and the group uses every DN equally."""
    masks = group_masks(targets)
    joint = torch.einsum("nbg,nbk,nbl->ngkl", masks, probs, other_probs)
    joint = (joint + joint.transpose(-1, -2)) / 2
    joint = joint / joint.sum(dim=(-1, -2), keepdim=True).clamp_min(TINY)
    row, column = joint.sum(dim=-1, keepdim=True), joint.sum(dim=-2, keepdim=True)
    ratio = joint.clamp_min(TINY) / (row * column).clamp_min(TINY)
    return mean_over_present_groups((joint * torch.log(ratio)).sum(dim=(-1, -2)), masks)


def view_disagreement(probs, other_probs):
    """(N,) mean over the images of -log(p . p'), p and p' the CN's distributions on two views
    of an image (SCAN's consistency term, Van Gansbeke et al. 2020): 0 when both views are
    sent to the same DN with certainty."""
    return -torch.log((probs * other_probs).sum(dim=-1).clamp_min(TINY)).mean(dim=1)


def self_labelling(logits, other_probs, threshold):
    """(N,) cross-entropy of the CN's logits on one view with the DN that the other view
    picks, over the images where that choice is confident (max p' > threshold; SCAN's
    self-labelling step, FixMatch's pseudo-labels). 0 when no image is confident."""
    confidence, label = other_probs.detach().max(dim=-1)
    confident = (confidence > threshold).to(logits.dtype)
    cross_entropy = image_nll(F.log_softmax(logits, dim=-1), label)
    return (cross_entropy * confident).sum(dim=1) / confident.sum(dim=1).clamp_min(1)


def gate_terms(out, other_probs, targets, opts):
    """(N,) the optional terms on the gate, to add to the binary loss. `out` is the model's
    GateOutputs on the (first) view, `other_probs` the CN's p on the second view (None when
    no term needs one)."""
    loss = torch.zeros(out.probs.shape[0], device=out.probs.device)
    if opts.iic:
        loss = loss - opts.iic * group_mutual_information(out.probs, other_probs, targets)
    if opts.consistency:
        loss = loss + opts.consistency * view_disagreement(out.probs, other_probs)
    if opts.self_label:
        loss = loss + opts.self_label * self_labelling(out.logits, other_probs, opts.self_label_threshold)
    if opts.group_divers:
        loss = loss - opts.group_divers * group_balance(out.probs, targets)
    return loss


def needs_second_view(opts):
    return bool(opts.iic or opts.consistency or opts.self_label)


def smallest_loss_experts(experts, targets):
    """(N, B, K, 2) DN logits, (N, B) targets -> (N, B) the DN whose own prediction has the
    smallest binary NLL on each image: the CN's target in the separated mode's hard-EM step."""
    nll_per_expert = image_nll(F.log_softmax(experts, dim=-1), targets.unsqueeze(-1).expand(experts.shape[:3]))
    return nll_per_expert.argmin(dim=-1)


def separated_cn_loss(out, targets, uniforms, smallest_share):
    """(N,) the CN's loss in a CN turn of `--clu_train_mode separated` (as in the published
    code): cross-entropy of its logits with a target DN per image, the smallest-loss DN with
    probability `smallest_share`, else a DN drawn uniformly. `uniforms` (N, B, 2) in [0, 1)
    decide: column 0 which rule, column 1 the random DN."""
    n_experts = out.logits.shape[-1]
    random_expert = (uniforms[..., 1] * n_experts).long().clamp_max(n_experts - 1)
    chosen = torch.where(uniforms[..., 0] < smallest_share,
                         smallest_loss_experts(out.experts.detach(), targets), random_expert)
    return nll(F.log_softmax(out.logits, dim=-1), chosen)


def scheduled_value(values, epochs, epoch):
    """The published code's schedule: `values[0]` before `epochs[0]`, linear between two listed
    epochs, `values[-1]` from the last listed epoch on."""
    if epoch < epochs[0]:
        return values[0]
    for (start, end), (low, high) in zip(zip(epochs, epochs[1:]), zip(values, values[1:])):
        if start <= epoch < end:
            return low + (high - low) * (epoch - start) / (end - start)
    return values[-1]
