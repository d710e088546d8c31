"""Batch transforms on the device: random affine views of the training images.

A view is drawn from 4 uniforms per image (rotation, scale, x shift, y shift), which the
training loop draws from each net's own generator, so that a net's views do not depend on
the nets trained beside it. One `affine_grid` + `grid_sample` call warps the whole batch.
"""

import math

import torch
import torch.nn.functional as F

N_UNIFORMS = 4  # uniforms per image and view


def augmenting(opts):
    return bool(opts.aug_rotation or opts.aug_shift or opts.aug_scale)


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


def random_affine(images, uniforms, opts):
    """(N, B, C, H, W) images, (N, B, 4) uniforms -> the warped images, same shape.
    Pixels from outside the image repeat its border (the background, on MNIST)."""
    flat = images.flatten(0, 1)
    theta = affine_matrices(uniforms.flatten(0, 1), opts.aug_rotation, opts.aug_shift, opts.aug_scale)
    grid = F.affine_grid(theta.to(flat.dtype), list(flat.shape), align_corners=False)
    warped = F.grid_sample(flat, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return warped.view_as(images)
