"""Tiny encoders for export and merging tests, shared by their test modules."""

from __future__ import annotations

import torch

from fasthmr_model.encoder.config import PRESETS
from fasthmr_model.encoder.merge_plan import MergePlan
from fasthmr_model.encoder.model import build_encoder


def perturbed_tiny_encoder(seed: int, perturbation_seed: int, plan: MergePlan = MergePlan()):
    """A `tiny` encoder (optionally following a merge plan) whose every tensor is nudged by noise: freshly
    initialised zero biases and unit norms would hide a tensor that export or merging got wrong."""
    model = build_encoder(PRESETS["tiny"], seed=seed, plan=plan)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(perturbation_seed)
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return model
