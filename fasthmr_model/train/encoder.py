"""`fasthmr train encoder`: the `tiny` encoder on the synthetic world's training crops, on the CPU (or a GPU).

Losses as HMR2.0 uses them where they apply (its relative weights, scaled up): L1 on root-relative 3D
joints, L1 on 2D joints projected by the predicted crop camera, MSE on the joint rotation matrices
(global orientation and body pose) and on betas. There is no adversarial prior: every training sample
has exact SMPL-format parameters.

HMR2.0's backbone starts from ViTPose, which was trained on 2D keypoint heatmaps; ours starts from random
weights, and its single-query head then sees almost the same (attention-averaged) features for every image,
so training sits on the mean-pose plateau for a long time. A training-only read-out gives the backbone that
dense signal from the first step: per joint, a softmax over the 192 tokens must pick the token that holds the
joint (a 16x12 heatmap, as ViTPose's). It is not part of the exported encoder.

The optimisation, checkpoints, resume and log are the shared loop's (train.loop); the config is
train.recipes.EncoderTrainingConfig. On a CUDA device the whole crop set is copied to the GPU once (the train
split's 5.6 GB of windows fit), batches are gathered there, and the forward pass runs in bfloat16 autocast
(the losses stay in float32).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from fasthmr_model.body.rotations import matrix_to_rot6d
from fasthmr_model.body.skeleton import NUM_JOINTS
from fasthmr_model.body.smplx_layer import load_smplx_layer
from fasthmr_model.bundle import IMAGENET_MEAN, IMAGENET_STD
from fasthmr_model.data.world import CropSet, load_crop_set
from fasthmr_model.data.crop import CROP_COLUMN_OFFSET
from fasthmr_model.encoder.config import CROP_SIZE, PATCH_PADDING, PATCH_SIZE, TOKEN_GRID, preset
from fasthmr_model.encoder.model import FastHMREncoder, build_encoder
from fasthmr_model.errors import FastHMRError
from fasthmr_model.train.geometry import project_to_crop, rot6d_to_matrix
from fasthmr_model.torch_files import load_torch_checkpoint
from fasthmr_model.train.loop import CHECKPOINT_NAME, train_loop, training_device
from fasthmr_model.train.recipes import EncoderTrainingConfig


class TokenHeatmap(torch.nn.Module):
    """Training-only read-out: backbone tokens (B, 192, C) -> per-joint logits over tokens (B, 24, 192)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(width)
        self.logits = torch.nn.Linear(width, NUM_JOINTS)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits(self.norm(tokens)).transpose(1, 2)


def joint_tokens(joints_2d: torch.Tensor) -> torch.Tensor:
    """Crop-normalised joints (B, 24, 2) -> index of the token whose footprint holds each joint (B, 24),
    -100 (ignored) for joints outside the encoder window. Footprints follow the patch padding (crop.py)."""
    column = joints_2d[..., 0] * CROP_SIZE + CROP_SIZE / 2 - CROP_COLUMN_OFFSET  # window pixels, edges at integers
    row = joints_2d[..., 1] * CROP_SIZE + CROP_SIZE / 2
    token_column = torch.floor((column + PATCH_PADDING) / PATCH_SIZE)
    token_row = torch.floor((row + PATCH_PADDING) / PATCH_SIZE)
    inside = (token_column >= 0) & (token_column < TOKEN_GRID[1]) & (token_row >= 0) & (token_row < TOKEN_GRID[0])
    index = (token_row * TOKEN_GRID[1] + token_column).long()
    return torch.where(inside, index, torch.full_like(index, -100))


class Losses:
    """The training objective over a batch: HMR2.0's terms, with a torch copy of the body model."""

    def __init__(self, config: EncoderTrainingConfig, body_model_path: Path) -> None:
        self.config = config
        self.body = load_smplx_layer(body_model_path)
        for parameter in self.body.parameters():
            parameter.requires_grad_(False)

    def joints(self, betas: torch.Tensor, rotmats: torch.Tensor) -> torch.Tensor:
        """(B, 10), (B, 24, 3, 3) -> root-relative joints (B, 24, 3)."""
        output = self.body(betas=betas, global_orient=rotmats[:, :1], body_pose=rotmats[:, 1:], pose2rot=False)
        return output.joints - output.joints[:, :1]

    def __call__(self, outputs, heatmap_logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        count = outputs.pose_6d.shape[0]
        rotmats = rot6d_to_matrix(outputs.pose_6d.reshape(count, NUM_JOINTS, 6))
        joints = self.joints(outputs.betas, rotmats)
        true_joints = batch["joints_3d"] - batch["joints_3d"][:, :1]
        terms = {
            "joints_3d": (joints - true_joints).abs().sum(-1).mean(),
            "joints_2d": (project_to_crop(joints, outputs.cam) - batch["joints_2d"]).abs().sum(-1).mean(),
            "global_orient": (rotmats[:, 0] - batch["rotmats"][:, 0]).square().sum((-1, -2)).mean(),
            "body_pose": (rotmats[:, 1:] - batch["rotmats"][:, 1:]).square().sum((-1, -2)).mean(),
            "betas": (outputs.betas - batch["betas"]).square().mean(),
            "token_heatmap": torch.nn.functional.cross_entropy(
                heatmap_logits.reshape(-1, heatmap_logits.shape[-1]), joint_tokens(batch["joints_2d"]).reshape(-1)),
        }
        c = self.config
        weights = {"joints_3d": c.weight_joints_3d, "joints_2d": c.weight_joints_2d,
                   "global_orient": c.weight_global_orient, "body_pose": c.weight_body_pose, "betas": c.weight_betas,
                   "token_heatmap": c.weight_token_heatmap}
        terms["total"] = sum(weights[name] * value for name, value in terms.items())
        return terms


def _normalise(windows: torch.Tensor, rng: np.random.Generator | None, config: EncoderTrainingConfig) -> torch.Tensor:
    """uint8 windows (B, 256, 192, 3) -> ImageNet-normalised float (B, 3, 256, 192) on the windows' device,
    optionally jittered (the jitter is drawn from `rng`, so it is the same on every device)."""
    images = windows.permute(0, 3, 1, 2).float() / 255.0
    if rng is not None:
        count = images.shape[0]
        brightness = torch.from_numpy(rng.uniform(-config.brightness_jitter, config.brightness_jitter, count))
        contrast = torch.from_numpy(rng.uniform(1 - config.contrast_jitter, 1 + config.contrast_jitter, count))
        brightness, contrast = (value.float().to(images.device)[:, None, None, None] for value in (brightness, contrast))
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = ((images - mean) * contrast + mean + brightness).clamp(0, 1)
    mean = torch.tensor(IMAGENET_MEAN, device=images.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=images.device)[:, None, None]
    return (images - mean) / std


BATCH_FIELDS = ("windows", "person_tokens", "rotmats", "betas", "joints_3d", "joints_2d")


class Batches:
    """Training batches of a crop set on one device.

    On the CPU the fields stay memory-mapped and each batch is read in file order; on a GPU every field is
    copied to the device once and batches are gathered there (reading 5.6 GB of windows per epoch through
    the host would starve the GPU).
    """

    def __init__(self, crops: CropSet, device: torch.device, resident: bool | None = None) -> None:
        self.device = device
        self.resident = device.type != "cpu" if resident is None else resident
        self.fields = {name: getattr(crops, name) for name in BATCH_FIELDS}
        if self.resident:
            self.fields = {name: torch.from_numpy(np.ascontiguousarray(array)).to(device)
                           for name, array in self.fields.items()}

    def __call__(self, indices: np.ndarray, rng: np.random.Generator | None,
                 config: EncoderTrainingConfig) -> dict[str, torch.Tensor]:
        indices = np.sort(indices)  # memory-mapped reads in file order (duplicates allowed)
        if self.resident:
            on_device = torch.from_numpy(indices).to(self.device)
            picked = {name: value[on_device] for name, value in self.fields.items()}
        else:
            picked = {name: torch.from_numpy(np.ascontiguousarray(array[indices])) for name, array in self.fields.items()}
        batch = {name: value.float() for name, value in picked.items() if name != "windows"}
        batch["image"] = _normalise(picked["windows"], rng, config)
        return batch


def training_mean_parameters(crops: CropSet) -> tuple[np.ndarray, np.ndarray]:
    """The training data's mean pose (per joint: the rotation nearest the mean matrix) as 6D (144,), and
    mean betas (10,). HMR2.0 starts its read-outs from SMPL's mean parameters; ours come from our data."""
    mean = crops.rotmats.mean(axis=0)  # (24, 3, 3)
    u, _, vt = np.linalg.svd(mean)
    fix = np.ones((NUM_JOINTS, 3))
    fix[:, 2] = np.sign(np.linalg.det(u @ vt))
    nearest = (u * fix[:, None, :]) @ vt
    return matrix_to_rot6d(nearest).reshape(-1).astype(np.float32), crops.betas.mean(axis=0).astype(np.float32)


def train_encoder(data: Path, run: Path, body_model_path: Path, config: EncoderTrainingConfig, *,
                  progress: bool = True) -> FastHMREncoder:
    """Train (or resume) in `run` on the crop set in `data`; returns the model (eval mode, on the CPU) after
    `config.steps` steps."""
    device = training_device(config)
    crops = load_crop_set(data)
    if crops.split_name == "test":
        raise FastHMRError(f"{data} is the test split: it is only evaluated, never trained on; train on 'train'")
    model = build_encoder(preset(config.preset), seed=config.seed)
    heatmap = TokenHeatmap(model.config.width)
    # The read-outs start from the data's mean parameters (a resumed run loads its own over them).
    mean_pose_6d, mean_betas = training_mean_parameters(crops)
    with torch.no_grad():
        model.head.mean_pose_6d.copy_(torch.from_numpy(mean_pose_6d)[None])
        model.head.mean_betas.copy_(torch.from_numpy(mean_betas)[None])
    model.to(device)
    heatmap.to(device)
    losses = Losses(config, body_model_path)
    losses.body.to(device)
    batches = Batches(crops, device)
    # bfloat16 autocast on GPUs only: on the CPU it is slower than float32 here.
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def loss_of_step(step: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([config.seed, step])
        # Smoke runs on a few frames may have fewer crops than a batch: draw with replacement then.
        indices = rng.choice(len(crops), config.batch_size, replace=len(crops) < config.batch_size)
        batch = batches(indices, rng, config)
        with autocast:
            tokens = model.backbone(batch["image"])
            outputs, heatmap_logits = model.head(tokens), heatmap(tokens)
        outputs = type(outputs)(*(value.float() for value in outputs))
        return losses(outputs, heatmap_logits.float(), batch)

    train_loop(kind="encoder", run=run, modules={"model": model, "token_heatmap": heatmap}, config=config,
               loss_of_step=loss_of_step, samples="images", same_config=("preset",),
               postfix=lambda record: {"loss": record["total"], "joint_l1_mm": round(1000 * record["joints_3d"], 1)},
               progress=progress)
    return model.to("cpu").eval()


def training_provenance(data: Path, run: Path, config: EncoderTrainingConfig) -> dict:
    """What the bundle's manifest says about how its encoder was trained."""
    state = load_torch_checkpoint(run / CHECKPOINT_NAME)
    device = torch.cuda.get_device_name(config.device) if config.device.startswith("cuda") else "cpu"
    return {"source": "synthetic-trained", "description": "tiny encoder trained on the synthetic world's train split",
            "data": Path(data).name, "run": Path(run).name,  # names only: never a machine's paths
            "steps": state["step"], "train_wall_s": round(state["wall_s"]),
            "device": f"{device} (torch {torch.__version__})", "config": asdict(config)}
