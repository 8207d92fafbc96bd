"""The frame encoder: ViT backbone + SMPL head, the module that is trained, converted and exported.

`FastHMREncoder.forward(image, person_tokens)` has the signature of the exported graph (see
`fasthmr_model.bundle.ENCODER_CONTRACT`). `person_tokens` (B, 192), 1 = the token shows the person, is
read only by an encoder whose `MergePlan` merges tokens (Mask-ToMe); all zeros (no mask) gives plain ToMe.
"""

from __future__ import annotations

import torch
from torch import nn

from fasthmr_model.encoder.config import EncoderConfig
from fasthmr_model.encoder.head import HeadOutput, SmplHead
from fasthmr_model.encoder.merge_plan import MergePlan
from fasthmr_model.encoder.vit import ViTBackbone

# HMR2.0's starting point for a fresh model: upright body seen from the front (global orientation = pi about
# x, since the camera's y points down), every other joint at rest, mean shape, weak-perspective scale 0.9.
FRESH_MEAN_POSE_6D = [1.0, 0.0, 0.0, 0.0, -1.0, 0.0] + [1.0, 0.0, 0.0, 0.0, 1.0, 0.0] * 23
FRESH_MEAN_CAM = [0.9, 0.0, 0.0]
INIT_STD = 0.02


class FastHMREncoder(nn.Module):
    """image (B, 3, 256, 192), person_tokens (B, 192) -> HeadOutput (pose_6d, betas, cam, feature)."""

    def __init__(self, config: EncoderConfig, plan: MergePlan = MergePlan()) -> None:
        super().__init__()
        self.config = config
        self.plan = plan
        self.backbone = ViTBackbone(config, plan)
        self.head = SmplHead(config)

    def forward(self, image: torch.Tensor, person_tokens: torch.Tensor) -> HeadOutput:
        if not self.plan.merges_tokens:
            return self.head(self.backbone(image))
        tokens, state = self.backbone.merge_forward(image, person_tokens)
        return self.head(tokens, state.sizes.log() if self.plan.proportional_attention else None)


def build_encoder(config: EncoderConfig, seed: int = 0, plan: MergePlan = MergePlan()) -> FastHMREncoder:
    """A freshly initialised encoder (ViT-style truncated-normal init, small read-outs), in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    model = FastHMREncoder(config, plan)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()
            elif parameter.ndim == 1:  # LayerNorm weights
                parameter.fill_(1.0)
            else:
                parameter.copy_(_truncated_normal(parameter.shape, INIT_STD, generator))
        head = model.head
        for readout in (head.pose_readout, head.betas_readout, head.cam_readout):
            readout.weight.mul_(0.5)  # start close to the mean parameters
        head.mean_pose_6d.copy_(torch.tensor([FRESH_MEAN_POSE_6D]))
        head.mean_cam.copy_(torch.tensor([FRESH_MEAN_CAM]))
    return model.eval()


def _truncated_normal(shape: torch.Size, std: float, generator: torch.Generator) -> torch.Tensor:
    """Normal(0, std) samples with values beyond 2 std redrawn by clamping into [-2 std, 2 std]."""
    return (torch.randn(shape, generator=generator) * std).clamp_(-2 * std, 2 * std)
