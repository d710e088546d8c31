"""Loss terms beyond the published method, each returning (N,): one value per net.

A new term is one function decorated with `@gate_term("option")` and one line in options.py's
table for its weight: the function sees one net's tensors (B images, ...), and gate_terms
maps it over the nets of a `--seeds` run. Most terms train the gate; the representation
terms (`representation=True`: --contrastive, --overclust_iic) train the encoder through
heads of their own, and are the only ones on during --warmup_epochs. The binary target
splits a batch into two groups (0: negative, 1: positive); most terms act within each group, since the
classes to discover live inside one group.
"""

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .augment import quarter_turns

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
    """(B,) binary targets -> (B, 2) floats: column g marks the images of group g."""
    return torch.stack([targets == 0, targets == 1], dim=-1).to(torch.float32)


def mean_over_present_groups(values, masks):
    """(2,) a value per group -> their mean over the groups that have images in the batch
    (at batch size 4 a group is often absent)."""
    present = (masks.sum(dim=0) > 0).to(values.dtype)
    return (values * present).sum() / present.sum().clamp_min(1)


@dataclass(frozen=True)
class GateTerm:
    value: Callable  # (out, second, targets, opts), one net's tensors -> its term ()
    sign: float  # +1: added to the loss; -1: subtracted (a quantity to maximise)
    second_view: bool  # reads the outputs on a second augmented view of the images
    representation: bool  # trains the representation, not the gate: on during the warm-up
    start: str | None  # the option holding the first epoch at which the term counts (None: the first)
    until: str | None  # the option holding the last epoch at which it counts (None, or its value 0: the last)


GATE_TERMS = {}  # option (the term's weight) -> GateTerm


def gate_term(option, maximise=False, second_view=False, representation=False, start=None, until=None):
    """Register a loss term, weighted by the option `option` (0: off), counted from the epoch
    held by the option `start` on (every epoch without one) up to the epoch held by the option
    `until` (the last without one, or when it holds 0). The term sees one
    net's tensors: the GateOutputs fields (B, ...) of the (first) view, the second view's
    (model.view_outputs: p, logits, z and the heads' outputs) or None, the binary targets
    (B,); gate_terms maps it over the nets of a --seeds run."""
    def register(value):
        GATE_TERMS[option] = GateTerm(value, -1.0 if maximise else 1.0, second_view, representation, start, until)
        return value
    return register


@gate_term("entweig")
def mean_entropy(out, second, targets, opts):
    """The mean entropy of p over the images: low when each choice is confident."""
    return entropy(out.probs).mean()


@gate_term("clustdivers", maximise=True)
def batch_balance(out, second, targets, opts):
    """The entropy of the batch's mean p: high when the batch spreads over all the DNs."""
    return entropy(out.probs.mean(dim=0))


@gate_term("group_divers", maximise=True, until="group_divers_until")
def group_balance(out, second, targets, opts):
    """The mean over the groups of the entropy of the group's mean p in the batch: high
    when each group spreads over all the DNs. Counts up to epoch --group_divers_until (0: every
    epoch), so that --sinkhorn's targets can take over once the gate has formed."""
    masks = group_masks(targets)
    means = masks.T @ out.probs / masks.sum(dim=0).unsqueeze(-1).clamp_min(1)
    return mean_over_present_groups(entropy(means), masks)


@gate_term("iic", maximise=True, second_view=True)
def group_mutual_information(out, second, targets, opts):
    """The mean over the two groups of the mutual information between the gate's choice on
    two views of the same images (Invariant Information Clustering, Ji et al. 2019): the
    joint distribution of (DN for view 1, DN for view 2) over the group's images of the
    batch, symmetrised; MI = sum P log(P / (P_i P_j)). High when both views of an image go
    to the same DN and the group uses every DN equally."""
    return grouped_mutual_information(out.probs, second.probs, targets)


def grouped_mutual_information(probs, second_probs, targets):
    """(B, K) distributions on two views, (B,) targets -> the mean over the groups present
    of the mutual information of the symmetrised joint distribution (see --iic)."""
    masks = group_masks(targets)
    joint = torch.einsum("bg,bk,bl->gkl", masks, probs, second_probs)
    joint = (joint + joint.transpose(-1, -2)) / 2
    joint = joint / joint.sum(dim=(-1, -2), keepdim=True).clamp_min(TINY)
    row, column = joint.sum(dim=-1, keepdim=True), joint.sum(dim=-2, keepdim=True)
    ratio = joint.clamp_min(TINY) / (row * column).clamp_min(TINY)
    return mean_over_present_groups((joint * torch.log(ratio)).sum(dim=(-1, -2)), masks)


@gate_term("consistency", second_view=True)
def view_disagreement(out, second, targets, opts):
    """The mean over the images of -log(p . p'), p and p' the CN's distributions on two views
    of an image (SCAN's consistency term, Van Gansbeke et al. 2020): 0 when both views are
    sent to the same DN with certainty. --consistency_grad: how far the gradient reaches
    through view 1's p (both: as through view 2's, SCAN's; cn: to the CN only, its z cut;
    dense: to the CN and the encoder's dense layer to z, the conv maps cut;
    view2: nowhere, view 1's p a fixed target, Mean Teacher with the net as its own teacher;
    confident: both for the images whose largest p is at least --consistency_confidence, cn for
    the others, as FixMatch lets only confident targets teach), from
    epoch --consistency_grad_from to --consistency_grad_until (consistency_grad_at)."""
    if opts.consistency_grad == "confident":
        confident = out.probs.detach().amax(dim=-1, keepdim=True) >= opts.consistency_confidence
        anchor = torch.where(confident, out.probs, out.cut_probs)
    else:
        anchor = {"both": out.probs, "cn": out.cut_probs, "dense": out.cut_probs,
                  "view2": out.probs.detach()}[opts.consistency_grad]
    return disagreement(anchor, second.probs).mean()


@gate_term("teacher_consistency", second_view=True)
def teacher_disagreement(out, second, targets, opts):
    """Mean Teacher's consistency (Tarvainen & Valpola 2017) in SCAN's form: the mean over the
    images of -log(p_T . p'), p_T the moving average's (--weight_ema) p on view 1, computed
    without gradient (out.teacher_probs), and p' the CN's on view 2. Where --consistency pulls
    both views of an image towards each other, this pulls view 2 towards a slower, steadier
    net's choice."""
    return disagreement(out.teacher_probs, second.probs).mean()


# Where each --consistency_grad mode cuts the encoder's gradient in view 1's cut p (out.cut_probs,
# model.outputs' `cut`): at z or at the conv maps; both and view2 read p itself.
CONSISTENCY_CUTS = {"cn": "z", "confident": "z", "dense": "maps"}


def consistency_grad_at(opts, epoch):
    """The options of `epoch`: --consistency_grad is SCAN's `both` before --consistency_grad_from
    and after --consistency_grad_until."""
    if epoch < opts.consistency_grad_from or (opts.consistency_grad_until and epoch > opts.consistency_grad_until):
        return argparse.Namespace(**{**vars(opts), "consistency_grad": "both"})
    return opts


def disagreement(probs, other_probs):
    """(B, K) two distributions per image -> (B,) -log(p . p'): 0 when both pick the same DN surely."""
    return -torch.log((probs * other_probs).sum(dim=-1).clamp_min(TINY))


@gate_term("neighbours")
def neighbour_disagreement(out, second, targets, opts):
    """SCAN's clustering loss (Van Gansbeke et al. 2020), the mean over the images of
    -log(p_i . p_j), j a neighbour of i in z within its binary group. With --neighbours_k K > 0,
    j is one of i's K nearest training images, mined at the start of the epoch
    (mined_neighbours) and passed through the net beside the batch (out.neighbour_probs, its
    p). Otherwise j is the image nearest to i (cosine) among the other images of its group in
    the batch, and an image alone in its group counts 0."""
    if out.neighbour_probs is not None:
        return disagreement(out.probs, out.neighbour_probs).mean()
    z = F.normalize(out.z.detach(), dim=-1)
    others = (targets.unsqueeze(0) == targets.unsqueeze(1)) & ~torch.eye(len(targets), dtype=torch.bool,
                                                                          device=targets.device)
    nearest = (z @ z.T).masked_fill(~others, -2.0).argmax(dim=1)  # cosines are >= -1
    has_neighbour = others.any(dim=1).to(out.probs.dtype)
    return (disagreement(out.probs, out.probs[nearest]) * has_neighbour).sum() / has_neighbour.sum().clamp_min(1)


def mined_neighbours(z, targets, k, chunk=1024):
    """(n, R) features, (n,) binary targets -> (n, k): for each image, the k other images of its
    group nearest to it in z (cosine), nearest first (SCAN's mining, here from the net's own z).
    In chunks of rows, so that memory stays at chunk x n."""
    z = F.normalize(z, dim=-1)
    table = torch.empty(len(z), k, dtype=torch.long, device=z.device)
    for group in (0, 1):
        members = (targets == group).nonzero().squeeze(1)  # more than k (training.check_against_data)
        group_z = z[members]
        for start in range(0, len(members), chunk):
            cosines = group_z[start:start + chunk] @ group_z.T
            rows = torch.arange(len(cosines), device=z.device)
            cosines[rows, rows + start] = -2.0  # not itself: cosines are >= -1
            table[members[start:start + chunk]] = members[cosines.topk(k, dim=1).indices]
    return table


@gate_term("self_label", second_view=True, start="self_label_from")
def self_labelling(out, second, targets, opts):
    """Cross-entropy of the CN's logits on one view with the DN that the other view picks,
    over the images where that choice is confident (max p' > --self_label_threshold; SCAN's
    self-labelling step, FixMatch's pseudo-labels). 0 when no image is confident. Counts
    from epoch --self_label_from on (SCAN's third stage: once the clusters have formed)."""
    confidence, label = second.probs.detach().max(dim=-1)
    confident = (confidence > opts.self_label_threshold).to(out.logits.dtype)
    cross_entropy = image_nll(F.log_softmax(out.logits, dim=-1), label)
    return (cross_entropy * confident).sum() / confident.sum().clamp_min(1)


@gate_term("sinkhorn", second_view=True, start="sinkhorn_from")
def swapped_equipartition(out, second, targets, opts):
    """SwAV's swapped prediction (Caron et al. 2020) within each group: the targets of one view
    are its p made to fill every DN equally over the group's images of the batch (Sinkhorn-Knopp,
    on p ** (1 / --sinkhorn_temp), detached), and the other view's log p must predict them; the
    mean of the two directions' cross-entropies. Unlike --group_divers, whose push fades as the
    group's mean p nears uniform, the targets move the least sure images of a DN that holds more
    than its share to the DNs that hold less. Counts from epoch --sinkhorn_from on."""
    first = equipartitioned(out.probs.detach(), targets, opts.sinkhorn_temp, opts.sinkhorn_iters)
    other = equipartitioned(second.probs.detach(), targets, opts.sinkhorn_temp, opts.sinkhorn_iters)
    return (soft_cross_entropy(second.probs, first) + soft_cross_entropy(out.probs, other)) / 2


OUTSIDE = -1e4  # a log-weight that counts as 0 next to any image's


def equipartitioned(probs, targets, temp, iterations):
    """(B, K) distributions, (B,) binary targets -> (B, K) the closest distributions (Sinkhorn-Knopp
    on probs ** (1 / temp), in log space) whose sum over each group's images is the same for
    every DN: each image's row sums to 1, each DN's column within a group to the group's size / K.
    Each iteration scales the columns to that share, then the rows to 1: the fewer the
    iterations, the looser the columns' equality (one: each DN's p divided by its group's sum)."""
    masks = group_masks(targets).T.unsqueeze(-1) > 0  # (2, B, 1)
    n_experts = probs.shape[-1]
    share = torch.log(masks.sum(dim=1, keepdim=True).clamp_min(1) / n_experts)  # (2, 1, 1)
    log_q = (torch.log(probs.clamp_min(TINY)) / temp).unsqueeze(0).masked_fill(~masks, OUTSIDE)
    for _ in range(iterations):
        log_q = (log_q - torch.logsumexp(log_q, dim=1, keepdim=True) + share).masked_fill(~masks, OUTSIDE)
        log_q = log_q - torch.logsumexp(log_q, dim=2, keepdim=True)
    return (torch.exp(log_q) * masks).sum(dim=0)


def soft_cross_entropy(probs, target_probs):
    """The mean over the images of -sum_k q_k log p_k."""
    return -(target_probs * torch.log(probs.clamp_min(TINY))).sum(dim=-1).mean()


@gate_term("contrastive", second_view=True, representation=True)
def view_contrast(out, second, targets, opts):
    """SimCLR's NT-Xent (Chen et al. 2020) between the projections of the two views (z itself
    without a projection head, --proj_size 0): each of the 2B views must pick its other view
    among the 2B - 1 others by cosine similarity / --contrastive_temp; the mean cross-entropy."""
    first = out.z if out.projection is None else out.projection
    other = second.z if second.projection is None else second.projection
    views = F.normalize(torch.cat([first, other]), dim=-1)
    n = len(first)
    similarity = (views @ views.T / opts.contrastive_temp).masked_fill(
        torch.eye(2 * n, dtype=torch.bool, device=views.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(views.device)
    return F.cross_entropy(similarity, partner)


@gate_term("overclust_iic", maximise=True, second_view=True, representation=True)
def over_clustering_information(out, second, targets, opts):
    """IIC's over-clustering (Ji et al. 2019): --iic's grouped mutual information on the
    auxiliary head's p (--overclust outputs, more than the DNs) on two views of the images."""
    return grouped_mutual_information(out.over_probs, second.over_probs, targets)


def gate_term_values(out, second, targets, opts):
    """{option: (N,) the term's value, before its weight} of each term switched on. `out` is
    the model's GateOutputs (N, B, ...) on the (first) view, `second` its outputs on the
    second view (model.view_outputs; None when no term reads one). Each term runs on one net
    at a time (vmap over the nets' axis), so no term can mix the nets of a --seeds run."""
    active = active_term_options(opts)
    if not active:
        return {}
    kind = type(out)
    fields = output_fields(out)
    second_fields = None if second is None else output_fields(second)

    def one_net(net_fields, net_second_fields, net_targets):
        net_out = kind(*net_fields)
        net_second = None if net_second_fields is None else kind(*net_second_fields)
        return tuple(GATE_TERMS[option].value(net_out, net_second, net_targets, opts) for option in active)

    if len(targets) == 1:  # one net: its own tensors, without vmap's cost (about 1 ms a step)
        values = one_net(first_net(fields), None if second is None else first_net(second_fields), targets[0])
        return {option: value.unsqueeze(0) for option, value in zip(active, values)}
    values = torch.vmap(one_net, in_dims=(net_axes(fields), None if second is None else net_axes(second_fields), 0))(
        fields, second_fields, targets)
    return dict(zip(active, values))


def output_fields(outputs):
    """A GateOutputs' fields as a tuple (what vmap maps over)."""
    return tuple(getattr(outputs, field.name) for field in dataclasses.fields(outputs))


def first_net(fields):
    return tuple(None if field is None else field[0] for field in fields)


def net_axes(fields):
    return tuple(None if field is None else 0 for field in fields)


def warming_up(opts, epoch):
    """Whether `epoch` is in --warmup_epochs (SCAN's first stage): the CN does not step and only
    the representation terms count."""
    return epoch <= opts.warmup_epochs


def term_counts(option, opts, epoch):
    """Whether the switched-on term `option` counts in the loss at `epoch` (None: every term
    counts): during --warmup_epochs only the representation terms; a term with a start option
    (--self_label_from, --sinkhorn_from) from that epoch on, one with an until option
    (--group_divers_until, 0: no end) up to that epoch."""
    if epoch is None:
        return True
    term = GATE_TERMS[option]
    if warming_up(opts, epoch):
        return term.representation
    started = term.start is None or epoch >= getattr(opts, term.start)
    last = 0 if term.until is None else getattr(opts, term.until)
    return started and (last == 0 or epoch <= last)


def weighted_sum(values, opts, zeros, epoch=None):
    """(N,) the terms' `values` (gate_term_values) with their weights and signs, summed: what
    the terms add to the loss; `zeros` (N,) when none counts. At `epoch`, only the terms that
    count then (term_counts; None: all)."""
    counted = [(option, value) for option, value in values.items() if term_counts(option, opts, epoch)]
    if not counted:
        return zeros
    return sum(GATE_TERMS[option].sign * getattr(opts, option) * value for option, value in counted)


def gate_terms(out, second, targets, opts):
    """(N,) the weighted sum of the terms switched on, to add to the binary loss (see
    gate_term_values)."""
    return weighted_sum(gate_term_values(out, second, targets, opts), opts,
                        out.probs.new_zeros(out.probs.shape[0]))


def active_term_options(opts):
    """The option of each term switched on (a non-zero weight), in GATE_TERMS' order."""
    return [option for option in GATE_TERMS if getattr(opts, option)]


def active_terms(opts):
    """(weight, GateTerm) of each term switched on (a non-zero weight)."""
    return [(getattr(opts, option), GATE_TERMS[option]) for option in active_term_options(opts)]


def mines_neighbours(opts):
    """Whether --neighbours pairs each image with a neighbour mined over the training set (--neighbours_k)."""
    return bool(opts.neighbours and opts.neighbours_k)


def needs_second_view(opts):
    return any(term.second_view for _, term in active_terms(opts))


def clustnet_loss(out, second, targets, opts):
    """(N,) each net's loss: the NLL of the binary target, plus the terms switched on."""
    return clustnet_loss_parts(out, second, targets, opts)[0]


def clustnet_loss_parts(out, second, targets, opts, epoch=None):
    """clustnet_loss at `epoch` (term_counts) and its parts: {"binary": (N,) the NLL of the
    binary target, option: (N,) each term's value before its weight} (the metrics log's
    loss_* columns; a term that does not count yet is still logged)."""
    binary = nll(out.log_probs, targets)
    values = gate_term_values(out, second, targets, opts)
    return binary + weighted_sum(values, opts, torch.zeros_like(binary), epoch), {"binary": binary, **values}


def rotation_loss(model, images, uniforms):
    """RotNet's term (Gidaris et al. 2018), (N,): the mean over the images of the rotation
    head's cross-entropy at telling which quarter-turn each image was given (augment.py's
    quarter_turns, k from its uniform in `uniforms` (N, B)). Only the encoder and the head
    learn from it: the CN and the DNs do not read the turned images."""
    turned, turns = quarter_turns(images, uniforms)
    logits = model.rotation_logits(turned)
    return nll(F.log_softmax(logits, dim=-1), turns)


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
