"""Differentiable geometry for the training losses: HMR2.0's 6D rotations and its crop camera (torch)."""

from __future__ import annotations

import torch

from fasthmr_model.encoder.config import CROP_FOCAL_PX, CROP_SIZE


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt: a1 = x[:3], a2 = x[3:] become the first two columns.

    The same convention as fasthmr_model.body.rotations.rot6d_to_matrix (numpy, run time).
    """
    first = torch.nn.functional.normalize(rot6d[..., 0:3], dim=-1)
    second = rot6d[..., 3:6]
    second = torch.nn.functional.normalize(second - (first * second).sum(-1, keepdim=True) * first, dim=-1)
    third = torch.cross(first, second, dim=-1)
    return torch.stack([first, second, third], dim=-1)


def project_to_crop(joints: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """Root-free joints (B, J, 3) seen by the crop camera cam (B, 3) = (s, tx, ty) -> (B, J, 2).

    Coordinates are crop-normalised: (u - crop centre) / crop side, in [-0.5, 0.5] inside the crop.
    The camera sits at (tx, ty, 2 f / (256 s)) as in HMR2.0, so for a small body depth this is the weak
    perspective s (X + t) / 2 that fasthmr_model.data.crop.camera_translation inverts.
    """
    scale = cam[:, 0].clamp(min=1e-2)
    translation = torch.stack([cam[:, 1], cam[:, 2], 2 * CROP_FOCAL_PX / (CROP_SIZE * scale)], dim=-1)
    points = joints + translation[:, None, :]
    return CROP_FOCAL_PX / CROP_SIZE * points[..., :2] / points[..., 2:3]
