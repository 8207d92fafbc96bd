"""Where the temporal decoder's gain comes from: the crop's ray, the encoder's feature, the window.

The decoder reads per frame the encoder's feature, the crop's ray (fasthmr_model.data.crop.crop_ray_rotations)
and the encoder's pose. This prints, on one sequence split, side by side (MPJPE / PA-MPJPE / accel, the
`fasthmr eval --sequences` scores):
- the per-frame encoder, and its global orientation turned by a share k of the crop's ray with no network
  (k tuned on val, as the filters are), alone and through the exponential average (its alpha as tuned);
- the causal decoder, and with its inputs zeroed: the encoder's feature, the ray, or both (both is
  `causal_without_features` of `fasthmr eval`);
and how many sequences the causal decoder leaves worse than the per-frame encoder (MPJPE per sequence).
Run:

    python scripts/decoder_ray_ablation.py [--bundle B] [--split val] [--tune-split val]
"""

from __future__ import annotations

import argparse

import numpy as np

from fasthmr_model.body.lbs import BodyModel
from fasthmr_model.body.rotations import axis_angle_to_matrix
from fasthmr_model.bundle import load_bundle
from fasthmr_model.data.world import default_cache, load_crop_set
from fasthmr_model.decoder.config import CROP_RAY_SIZE
from fasthmr_model.decoder.evaluation import filtered_rotmats, per_frame_rotmats, score
from fasthmr_model.decoder.filters import load_filter_parameters
from fasthmr_model.decoder.pose import body_rest_points
from fasthmr_model.decoder.runtime import DecoderSession, decode_causal, frame_inputs, poses_to_rotmats
from fasthmr_model.decoder.sequences import build_sequence_split, sequence_ranges, split_crop_rays
from fasthmr_model.metrics import EMDB_ROOT_JOINTS, mpjpe
from fasthmr_model.runtime import RuntimeConfig

SHARES = np.round(np.arange(0.0, 1.01, 0.1), 2)


def turned(rotmats: np.ndarray, rays: np.ndarray, share: float) -> np.ndarray:
    """Rotations (N, 24, 3, 3) with the global orientation turned by `share` of the crop rays (N, 3)."""
    out = rotmats.copy()
    out[:, 0] = axis_angle_to_matrix(share * rays.astype(np.float64)) @ rotmats[:, 0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="bundle with a decoder (default: the shipped one)")
    parser.add_argument("--split", default="val", help="the split scored")
    parser.add_argument("--tune-split", default="val", help="the split the share k is tuned on")
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    body = BodyModel.from_file(bundle.body_model_path)

    def split(name):
        return load_crop_set(build_sequence_split(name, default_cache(), bundle.body_model_path, progress=False))

    tuning = split(args.tune_split)
    encoded, rotmats = per_frame_rotmats(bundle, tuning)
    rays = split_crop_rays(tuning)
    betas = encoded["betas"].astype(np.float64)
    share = min(SHARES, key=lambda k: score(body, tuning, betas, turned(rotmats, rays, k))["mpjpe"])

    crops = tuning if args.split == args.tune_split else split(args.split)
    encoded, rotmats = per_frame_rotmats(bundle, crops)
    rays, betas = split_crop_rays(crops), encoded["betas"].astype(np.float64)
    filters = load_filter_parameters()
    rows = {"per-frame encoder": rotmats,
            f"per-frame, turned by {share} of the ray (k tuned on {args.tune_split})": turned(rotmats, rays, share),
            f"ema (alpha {filters.ema.alpha}) of the turned per-frame poses":
                filtered_rotmats(crops, turned(rotmats, rays, share), filters)["ema"]}
    session = DecoderSession(bundle, RuntimeConfig())
    rest = body_rest_points(body, betas)
    frames = frame_inputs(rest, encoded["feature"], rays, rotmats)
    size = session.config.feature_size
    for name, zeroed in (("causal decoder", slice(0, 0)), ("causal, the encoder's feature zeroed", slice(0, size)),
                         ("causal, the ray zeroed", slice(size, size + CROP_RAY_SIZE)),
                         ("causal, both zeroed (causal_without_features)", slice(0, size + CROP_RAY_SIZE))):
        inputs = frames.copy()
        inputs[:, zeroed] = 0.0
        decoded = np.concatenate([decode_causal(session, inputs[part]) for part in sequence_ranges(crops)])
        rows[name] = poses_to_rotmats(rest, decoded)
    print(f"split {crops.split_name}: {len(sequence_ranges(crops))} sequences, {len(crops)} frames; bundle "
          f"{bundle.path.name}")
    print("| | MPJPE | PA-MPJPE | accel |")
    print("|---|---|---|---|")
    for name, chosen in rows.items():
        scores = score(body, crops, betas, chosen)
        print(f"| {name} | {scores['mpjpe']:.2f} | {scores['pa_mpjpe']:.2f} | {scores['accel']:.2f} |")
    true_joints = body.forward(np.asarray(crops.betas, np.float64), np.asarray(crops.rotmats, np.float64),
                               with_vertices=False)[1]
    errors = {name: mpjpe(body.forward(betas, rows[name], with_vertices=False)[1], true_joints, EMDB_ROOT_JOINTS)
              for name in ("per-frame encoder", "causal decoder")}
    changes = np.array([errors["causal decoder"][part].mean() - errors["per-frame encoder"][part].mean()
                        for part in sequence_ranges(crops)])
    print(f"causal decoder against the per-frame encoder, per sequence: {int((changes > 0).sum())} of {len(changes)} "
          f"worse (by up to {changes.max():.1f} mm), mean change {changes.mean():+.2f} mm")


if __name__ == "__main__":
    main()
