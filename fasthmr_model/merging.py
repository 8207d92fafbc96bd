"""`fasthmr merge`: ECLM calibrated on a synthetic split, plus Mask-ToMe, written as a new bundle (torch).

The bundle's encoder is read back into PyTorch (`original_encoder`), Algorithm 1 searches the block
windows to merge against the original model's MPJPE on the calibration split (scored like `fasthmr eval`:
EMDB convention, mm), and the merged encoder with the token schedule is exported as a new bundle whose
manifest records the plan, tau, and the calibration MPJPE before and after. No weight is retrained.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.rotations import rot6d_to_matrix
from fasthmr_model.body.skeleton import NUM_BETAS, NUM_JOINTS
from fasthmr_model.bundle import Bundle
from fasthmr_model.data.crop import normalise_windows
from fasthmr_model.data.world import CropSet
from fasthmr_model.encoder.config import POSE_6D_SIZE
from fasthmr_model.encoder.eclm import BASE_ONLY_TENSORS, merge_backbone_state, search_merge_windows
from fasthmr_model.encoder.merge_plan import MergePlan
from fasthmr_model.encoder.model import FastHMREncoder
from fasthmr_model.errors import FastHMRError
from fasthmr_model.metrics import EMDB_ROOT_JOINTS, mpjpe, pa_mpjpe

PREDICT_BATCH = 64


def original_encoder(bundle: Bundle) -> FastHMREncoder:
    """The bundle's encoder before any merging (eval mode), to merge or to measure against.

    An unmerged bundle's encoder is read back as it is. A bundle whose plan merges tokens only (the shipped
    default: Mask-ToMe, no ECLM) holds the original weights, since token merging adds none: they are loaded
    under the plain plan. A bundle with ECLM-merged blocks has lost its original weights: an error says so.
    """
    from fasthmr_model.export import load_encoder_from_bundle

    model = load_encoder_from_bundle(bundle)
    if model.plan.merged_windows:
        raise FastHMRError(f"{bundle.path} is already merged (its blocks by ECLM, which loses the original weights); "
                           "merge the original (unmerged) bundle instead")
    if model.plan == MergePlan():
        return model
    original = FastHMREncoder(model.config, MergePlan())
    original.load_state_dict(model.state_dict())
    return original.eval()


def merged_encoder(original: FastHMREncoder, plan: MergePlan) -> FastHMREncoder:
    """The unmerged `original` with `plan` applied: ECLM weights (Eq. 4) and the token schedule (eval mode)."""
    if original.plan != MergePlan():
        raise FastHMRError("this encoder is already merged; merge the original (unmerged) bundle instead")
    model = FastHMREncoder(original.config, plan)
    groups = plan.block_groups(original.config.depth)
    model.load_state_dict(merge_backbone_state(original.state_dict(), groups, BASE_ONLY_TENSORS[plan.eclm_tensors]))
    return model.eval()


class PlanEvaluator:
    """Scores merge plans of one unmerged encoder on a crop set (in PyTorch), remembering each result.

    Joint errors only, with `fasthmr eval`'s convention (EMDB: SMPL's 24 joints rooted at the mean of the
    hips): the mesh is not needed to compare plans, and skipping it makes a calibration trial cheap.
    person_tokens (N, 192): flags to feed instead of the crop set's own (e.g. all zeros: no mask).
    device: where PyTorch runs ("cpu", "cuda").
    """

    def __init__(self, original: FastHMREncoder, crops: CropSet, body: BodyModel,
                 person_tokens: np.ndarray | None = None, device: str = "cpu") -> None:
        self.original = original.eval()
        self.crops = crops
        self.body = body
        self.device = device
        self.person_tokens = np.asarray(crops.person_tokens if person_tokens is None else person_tokens, np.float32)
        self.true_joints = body.forward(np.asarray(crops.betas, np.float64), np.asarray(crops.rotmats, np.float64),
                                        with_vertices=False)[1]
        self._scores: dict[tuple, dict[str, np.ndarray]] = {}
        self._block_inputs: list[list[torch.Tensor]] | None = None

    def per_person(self, plan: MergePlan, person_tokens: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """{"mpjpe": (N,), "pa_mpjpe": (N,)} in mm for every crop under `plan` (optionally other flags)."""
        flags = self.person_tokens if person_tokens is None else np.asarray(person_tokens, np.float32)
        key = (plan, flags.tobytes()) if plan.merges_tokens else (plan,)
        if key not in self._scores:
            if plan.merges_tokens or not plan.merged_windows:
                model = self.original if plan == MergePlan() else merged_encoder(self.original, plan)
                betas, pose_6d = predict(model.to(self.device), self.crops, flags, self.device)
                model.to("cpu")
            else:
                betas, pose_6d = self._predict_from_block(merged_encoder(self.original, plan),
                                                          plan.merged_windows[0][0])
            rotmats = rot6d_to_matrix(pose_6d.reshape(-1, NUM_JOINTS, 6))
            joints = self.body.forward(betas.astype(np.float64), rotmats.astype(np.float64), with_vertices=False)[1]
            rooted = [points - points[:, list(EMDB_ROOT_JOINTS)].mean(axis=1, keepdims=True)
                      for points in (joints, self.true_joints)]
            self._scores[key] = {"mpjpe": mpjpe(*rooted), "pa_mpjpe": pa_mpjpe(*rooted)}
        return self._scores[key]

    def _predict_from_block(self, model: FastHMREncoder, first: int) -> tuple[np.ndarray, np.ndarray]:
        """Predictions of an ECLM-merged `model` whose blocks below original block `first` are the original's:
        it starts from the original's tokens entering block `first` (computed once), so a calibration trial
        near the top of the backbone costs a few blocks, not the whole encoder."""
        if self._block_inputs is None:
            self._block_inputs = self._original_block_inputs()
        model.to(self.device)
        betas, pose_6d = [], []
        with torch.no_grad():
            for tokens in self._block_inputs[first]:
                tokens = tokens.to(self.device)
                for block in model.backbone.blocks[first:]:
                    tokens = block(tokens)
                output = model.head(model.backbone.last_norm(tokens))
                betas.append(output.betas.cpu().numpy())
                pose_6d.append(output.pose_6d.cpu().numpy())
        model.to("cpu")
        return np.concatenate(betas), np.concatenate(pose_6d)

    def _original_block_inputs(self) -> list[list[torch.Tensor]]:
        """[k][batch] = the original backbone's tokens entering block k, per batch of PREDICT_BATCH crops."""
        backbone = self.original.backbone.to(self.device)
        inputs: list[list[torch.Tensor]] = [[] for _ in backbone.blocks]
        with torch.no_grad():
            for start in range(0, len(self.crops), PREDICT_BATCH):
                window = np.asarray(self.crops.windows[start:start + PREDICT_BATCH])
                tokens = backbone.embed(torch.from_numpy(normalise_windows(window)).to(self.device))
                for index, block in enumerate(backbone.blocks):
                    inputs[index].append(tokens.cpu())
                    tokens = block(tokens)
        self.original.to("cpu")
        return inputs

    def mpjpe(self, plan: MergePlan, person_tokens: np.ndarray | None = None) -> float:
        return float(self.per_person(plan, person_tokens)["mpjpe"].mean())


def predict(model: FastHMREncoder, crops: CropSet, person_tokens: np.ndarray, device: str = "cpu"
            ) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch predictions for every crop: betas (N, 10), pose_6d (N, 144)."""
    count = len(crops)
    betas = np.empty((count, NUM_BETAS), np.float32)
    pose_6d = np.empty((count, POSE_6D_SIZE), np.float32)
    with torch.no_grad():
        for start in range(0, count, PREDICT_BATCH):
            window = slice(start, min(start + PREDICT_BATCH, count))
            images = torch.from_numpy(normalise_windows(np.asarray(crops.windows[window]))).to(device)
            output = model(images, torch.from_numpy(person_tokens[window]).to(device))
            betas[window], pose_6d[window] = output.betas.cpu().numpy(), output.pose_6d.cpu().numpy()
    return betas, pose_6d


def merge_bundle(bundle: Bundle, out: Path, crops: CropSet, tau_mm: float, token_plan: MergePlan = MergePlan(),
                 overwrite: bool = False, progress=print) -> tuple[Bundle, dict]:
    """Calibrate ECLM at `tau_mm` on `crops`, add the token merging of `token_plan`, and write the bundle;
    returns it with the merge record (also in its manifest) and the ONNX-vs-PyTorch parity.

    token_plan: every field but `merged_windows` is taken from it (the token schedule, its options, and
    which tensors ECLM merges).
    """
    from fasthmr_model.export import build_bundle, encoder_parity

    if crops.split_name == "test":
        raise FastHMRError("the test split is only evaluated: calibrate on 'val' (or 'train')")
    original = original_encoder(bundle)
    evaluator = PlanEvaluator(original, crops, BodyModel.from_file(bundle.body_model_path))
    layers_only = dataclasses.replace(token_plan, token_schedule=(), merged_windows=())

    def error_of(windows: list[tuple[int, int]]) -> float:
        error = evaluator.mpjpe(dataclasses.replace(layers_only, merged_windows=tuple(windows)))
        progress(f"  ECLM trial {windows or 'original'}: calibration MPJPE {error:.2f} mm")
        return error

    search = search_merge_windows(original.config.depth, error_of, tau_mm)
    plan = dataclasses.replace(token_plan, merged_windows=tuple(search.windows))
    merged = merged_encoder(original, plan)
    record = {
        "eclm": {
            "tau_mm": tau_mm,
            "merged_blocks": [list(range(first, last + 1)) for first, last in search.windows],
            "blocks": len(plan.block_groups(original.config.depth)),
            "trials": len(search.trials) + 1,
        },
        "calibration": {
            "split": crops.split_name, "persons": len(crops),
            "mpjpe_original_mm": round(search.original_error, 2),
            "mpjpe_layers_merged_mm": round(search.merged_error, 2),
            "mpjpe_merged_mm": round(evaluator.mpjpe(plan), 2),
        },
    }
    # The source bundle by folder name and encoder checksum, never by its path on this machine.
    provenance = {**bundle.provenance,
                  "merged_from": {"bundle": Path(bundle.path).name, "encoder_sha256": bundle.encoder_sha256}}
    if bundle.has_decoder:
        # The decoder was trained on the unmerged encoder's features; the merged encoder's differ.
        progress(f"{bundle.path}'s temporal decoder is not carried over: it was trained on the unmerged encoder's "
                 f"features; train one for {out} with `fasthmr train decoder --bundle {out}`")
    merged_bundle = build_bundle(merged, Path(out), provenance=provenance,
                                 camera_anchor=bundle.camera_anchor, body_model=bundle.body_model_path,
                                 preset_name=bundle.preset, overwrite=overwrite, merge_record=record)
    record["onnx_parity"] = encoder_parity(merged, merged_bundle)
    return merged_bundle, record
