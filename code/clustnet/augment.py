"""Batch transforms on the device: random views of the training images.

A view of an image is drawn from a few uniforms per transform (the affine warp: rotation,
scale, x shift, y shift), which the training loop draws from each net's own generator, so
that a net's views do not depend on the nets trained beside it. A new augmentation is one
function decorated with `@view_transform(n_uniforms, "option", ...)` (it is on when one of
its options is non-zero) and its lines in options.py's table.
"""

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ViewTransform:
    apply: Callable  # (images (N, B, C, H, W), uniforms (N, B, n_uniforms), opts) -> images
    n_uniforms: int  # uniforms it reads per image
    options: tuple  # its options: it is on when one of them is non-zero


VIEW_TRANSFORMS = []  # applied in this order


def view_transform(n_uniforms, *options):
    def register(apply):
        VIEW_TRANSFORMS.append(ViewTransform(apply, n_uniforms, options))
        return apply
    return register


def active_transforms(opts):
    return [t for t in VIEW_TRANSFORMS if any(getattr(opts, option) for option in t.options)]


def view_uniforms(opts):
    """The uniforms per image that one view reads (0: no augmentation)."""
    return sum(t.n_uniforms for t in active_transforms(opts))


def random_view(images, uniforms, opts):
    """(N, B, C, H, W) images, (N, B, view_uniforms(opts)) uniforms -> a random view of each."""
    start = 0
    for transform in active_transforms(opts):
        images = transform.apply(images, uniforms[..., start:start + transform.n_uniforms], opts)
        start += transform.n_uniforms
    return images


def affine_matrices(uniforms, rotation, shift, scale):
    """(M, 4) uniforms in [0, 1) -> (M, 2, 3) matrices for `F.affine_grid`: a rotation of up
    to +-`rotation` degrees, a zoom by a factor in [1 - scale, 1 + scale] and a shift of up
    to +-`shift` of the image size (affine_grid's coordinates span [-1, 1]: a size is 2)."""
    signed = 2 * uniforms - 1
    angle = signed[:, 0] * math.radians(rotation)
    zoom = 1 + signed[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift_x, shift_y = 2 * shift * signed[:, 2], 2 * shift * signed[:, 3]
    return torch.stack([torch.stack([cos, -sin, shift_x], dim=1),
                        torch.stack([sin, cos, shift_y], dim=1)], dim=1)


@view_transform(4, "aug_rotation", "aug_shift", "aug_scale")
def random_affine(images, uniforms, opts):
    """(N, B, C, H, W) images, (N, B, 4) uniforms -> the warped images, same shape. Pixels
    from outside the image repeat its border (the background, on MNIST)."""
    return warp(images, affine_matrices(uniforms.flatten(0, 1), opts.aug_rotation, opts.aug_shift, opts.aug_scale))


def warp(images, theta):
    """(N, B, C, H, W) images, (N*B, 2, 3) affine_grid matrices -> the warped images, same
    shape: one `affine_grid` + `grid_sample` call for the whole batch, the border repeated."""
    flat = images.flatten(0, 1)
    grid = F.affine_grid(theta.to(flat.dtype), list(flat.shape), align_corners=False)
    return F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False).view_as(images)


@view_transform(1, "aug_flip")
def random_flip(images, uniforms, opts):
    """(N, B, C, H, W) images, (N, B, 1) uniforms -> each image mirrored left-right where its
    uniform is below --aug_flip (the probability of a flip)."""
    flip = (uniforms[..., 0] < opts.aug_flip).view(*uniforms.shape[:2], 1, 1, 1)
    return torch.where(flip, images.flip(-1), images)


@view_transform(2, "aug_jitter")
def random_jitter(images, uniforms, opts):
    """(N, B, C, H, W) images, (N, B, 2) uniforms -> each image's contrast scaled around its
    mean by a factor in [1 - v, 1 + v], then its brightness shifted by up to +-v (pixels are
    normalised: v in units of the dataset's standard deviation); v = --aug_jitter."""
    signed = (2 * uniforms - 1) * opts.aug_jitter
    contrast, brightness = (1 + signed[..., 0]).view(*signed.shape[:2], 1, 1, 1), signed[..., 1, None, None, None]
    mean = images.mean(dim=(-3, -2, -1), keepdim=True)
    return mean + contrast * (images - mean) + brightness


def crop_matrices(uniforms, smallest_area):
    """(M, 4) uniforms in [0, 1) -> (M, 2, 3) matrices for `F.affine_grid`: a crop of a random
    area in [`smallest_area`, 1] of the image (a share of it), of aspect ratio in [3/4, 4/3]
    (log-uniform), at a random place inside the image."""
    area = 1 - uniforms[:, 0] * (1 - smallest_area)
    ratio = torch.exp((2 * uniforms[:, 1] - 1) * math.log(4 / 3))
    width, height = torch.sqrt(area * ratio).clamp_max(1), torch.sqrt(area / ratio).clamp_max(1)
    shift_x, shift_y = (2 * uniforms[:, 2] - 1) * (1 - width), (2 * uniforms[:, 3] - 1) * (1 - height)
    zeros = torch.zeros_like(width)
    return torch.stack([torch.stack([width, zeros, shift_x], dim=1),
                        torch.stack([zeros, height, shift_y], dim=1)], dim=1)


@view_transform(4, "aug_crop")
def random_crop(images, uniforms, opts):
    """(N, B, C, H, W) images, (N, B, 4) uniforms -> a random crop of each, resized to the
    image's size (SimCLR's random resized crop; --aug_crop v: areas down to 1 - v)."""
    return warp(images, crop_matrices(uniforms.flatten(0, 1), 1 - opts.aug_crop))


@view_transform(3, "aug_colour")
def random_colour(images, uniforms, opts):
    """(N, B, C, H, W) images, (N, B, 3) uniforms -> each colour image's hue rotated about the
    grey axis by up to +-v/4 of a turn, its saturation scaled by a factor in [1 - v, 1 + v],
    and, with probability v/2, the image made grey (SimCLR's colour distortion for CIFAR at
    v = 0.4: hue +-0.1, saturation +-0.4, greyscale 0.2); v = --aug_colour. Per pixel, the
    grey is the mean of the (normalised) channels and the chroma what is left; the rotation
    turns the chroma about (1, 1, 1). Images with one channel have no colour: unchanged."""
    if images.shape[-3] != 3:
        return images
    signed = 2 * uniforms - 1
    angle = (signed[..., 1] * opts.aug_colour * math.pi / 2).view(*uniforms.shape[:2], 1, 1, 1)
    saturation = ((1 + signed[..., 0] * opts.aug_colour).clamp_min(0) * (uniforms[..., 2] >= opts.aug_colour / 2))
    grey = images.mean(dim=-3, keepdim=True)
    chroma = images - grey
    red, green, blue = chroma.unbind(-3)
    cross = torch.stack([blue - green, red - blue, green - red], dim=-3) / math.sqrt(3)  # (1, 1, 1)/sqrt(3) x chroma
    turned = torch.cos(angle) * chroma + torch.sin(angle) * cross
    return grey + saturation.view(*uniforms.shape[:2], 1, 1, 1) * turned


@view_transform(2, "aug_erase")
def random_erase(images, uniforms, opts):
    """(N, B, C, H, W) images, (N, B, 2) uniforms -> each image with a square of side v times its
    own (v = --aug_erase) set to 0 (normalised pixels: the dataset's mean), centred at (u1 W, u2 H)
    and clipped at the border: Cutout (DeVries and Taylor 2017), part of SCAN's strong views. A
    pixel is erased when its centre lies inside the square. After the other transforms."""
    height, width = images.shape[-2:]
    half = opts.aug_erase / 2
    rows = ((torch.arange(height, device=images.device) + 0.5) / height - uniforms[..., 1, None]).abs() < half
    columns = ((torch.arange(width, device=images.device) + 0.5) / width - uniforms[..., 0, None]).abs() < half
    erased = (rows.unsqueeze(-1) & columns.unsqueeze(-2)).unsqueeze(-3)  # (N, B, 1, H, W)
    return images.masked_fill(erased, 0.0)


def quarter_turns(images, uniforms):
    """(N, B, C, H, W) square images, (N, B) uniforms -> each image turned counter-clockwise
    by k quarter-turns, k = floor(4 u) in 0..3 (RotNet's four rotations), and k (N, B)."""
    turns = (uniforms * 4).long().clamp(0, 3)
    turned = torch.stack([images.rot90(k, (-2, -1)) for k in range(4)])  # (4, N, B, C, H, W)
    index = turns.view(1, *turns.shape, 1, 1, 1).expand(1, *images.shape)
    return turned.gather(0, index).squeeze(0), turns
