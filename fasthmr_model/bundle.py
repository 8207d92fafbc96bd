"""Model bundles: a folder with the ONNX graphs, the body model and one JSON manifest.

The encoder graph is a contract (`ENCODER_CONTRACT`, written into every manifest) so that programs outside
Python can run it. Loading checks the format version and every file's SHA-256; writing builds the bundle in
a temporary folder beside the target and renames it into place, so a failed write leaves nothing behind.
Run-time module: numpy and the standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fasthmr_model.body.skeleton import NUM_BETAS
from fasthmr_model.encoder.config import CAM_SIZE, IMAGE_HEIGHT, IMAGE_WIDTH, NUM_TOKENS, POSE_6D_SIZE, EncoderConfig
from fasthmr_model.encoder.merge_plan import MergePlan
from fasthmr_model.errors import BundleError, FastHMRError

BUNDLE_FORMAT = "fasthmr-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
ENCODER_FILE = "encoder.onnx"
BODY_MODEL_FILE = "body_model.npz"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

ENCODER_CONTRACT = {
    "file": ENCODER_FILE,
    "inputs": {
        "image": {
            "dtype": "float32", "shape": ["B", 3, IMAGE_HEIGHT, IMAGE_WIDTH],
            "meaning": "RGB person crop: the central 192 columns of a 256x256 square crop, "
                       "(pixel / 255 - mean) / std with ImageNet mean and std",
        },
        "person_tokens": {
            "dtype": "float32", "shape": ["B", NUM_TOKENS],
            "meaning": "1 = the token (16x12 grid, row-major) shows the person, 0 = background; "
                       "graphs without token merging ignore it",
        },
    },
    "outputs": {
        "pose_6d": {"dtype": "float32", "shape": ["B", POSE_6D_SIZE],
                    "meaning": "24 joints x 6D rotation (global orientation first); columns 1 and 2 of R"},
        "betas": {"dtype": "float32", "shape": ["B", NUM_BETAS], "meaning": "shape coefficients"},
        "cam": {"dtype": "float32", "shape": ["B", CAM_SIZE],
                "meaning": "weak-perspective camera (s, tx, ty) of the 256x256 crop"},
        "feature": {"dtype": "float32", "shape": ["B", "D"], "meaning": "the SMPL head's output token"},
    },
    "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
}

# What the predicted crop camera (s, tx, ty) places: HMR2.0 projects the body model's joints as posed around
# the model's origin ("body_origin": transl = the camera translation); our training projects root-relative
# joints, so its camera places the pelvis ("pelvis": transl = camera translation - the rest pelvis of the
# predicted shape, since the global rotation pivots about the pelvis). Manifests record one of these.
CAMERA_ANCHORS = ("body_origin", "pelvis")


class MeanParameters(NamedTuple):
    """The mean pose and shape the encoder's read-outs are residuals over (manifest: encoder.mean_parameters)."""

    pose_6d: np.ndarray  # (POSE_6D_SIZE,) float32: 24 joints x 6D rotation
    betas: np.ndarray  # (NUM_BETAS,) float32


@dataclass(frozen=True)
class DecoderSection:
    """The manifest's "decoder" section, as decoder.export.bundle_with_decoder writes it."""

    file: str  # bundle-relative name of the graph
    window: int  # frames per window W
    config: dict  # decoder.config.DecoderConfig.to_dict()
    noise: tuple[float, ...]  # the fixed starting sample the run time feeds, (latent_tokens x latent_size) flattened
    encoder_file_sha256: str  # the encoder graph whose features it was trained on
    contract: dict  # the graph's inputs and outputs
    provenance: dict

    @classmethod
    def from_dict(cls, section: dict, manifest_path: Path) -> "DecoderSection":
        missing = sorted({"file", "window", "config", "noise", "encoder_file_sha256"} - set(section))
        if missing:
            raise BundleError(f"{manifest_path}: the decoder section lacks {missing}; retrain the decoder with "
                              "this fasthmr")
        return cls(file=section["file"], window=int(section["window"]), config=section["config"],
                   noise=tuple(section["noise"]), encoder_file_sha256=section["encoder_file_sha256"],
                   contract=section.get("contract", {}), provenance=section.get("provenance", {}))


@dataclass(frozen=True)
class Bundle:
    """A loaded (verified) bundle: its folder and manifest, read through the typed properties below."""

    path: Path
    manifest: dict

    @property
    def encoder_path(self) -> Path:
        return self.path / self.manifest["encoder"]["file"]

    @property
    def body_model_path(self) -> Path:
        return self.path / self.manifest["body_model"]["file"]

    @property
    def encoder_config(self) -> EncoderConfig:
        return EncoderConfig.from_dict(self.manifest["encoder"]["config"])

    @property
    def feature_size(self) -> int:
        return self.encoder_config.head_width

    @property
    def camera_anchor(self) -> str:
        """One of CAMERA_ANCHORS (checked at load)."""
        return self.manifest["encoder"]["camera_anchor"]

    @property
    def preset(self) -> str | None:
        """The encoder preset's name (encoder.config.PRESETS), None for a converted checkpoint."""
        return self.manifest["encoder"].get("preset")

    @property
    def merge(self) -> dict | None:
        """The encoder's merge section: its plan ("plan") and how it was calibrated; None when unmerged."""
        return self.manifest["encoder"].get("merge")

    @property
    def merge_plan(self) -> MergePlan:
        """The merge plan the encoder graph runs; MergePlan() (nothing merged) for an unmerged encoder."""
        return MergePlan.from_dict(self.merge["plan"] if self.merge else None)

    @property
    def mean_parameters(self) -> MeanParameters | None:
        """None for bundles exported before the manifest recorded them."""
        mean = self.manifest["encoder"].get("mean_parameters")
        if mean is None:
            return None
        return MeanParameters(np.asarray(mean["pose_6d"], np.float32), np.asarray(mean["betas"], np.float32))

    @property
    def file_names(self) -> tuple[str, ...]:
        """Bundle-relative names of every checksummed file."""
        return tuple(self.manifest["files"])

    @property
    def encoder_sha256(self) -> str:
        """The encoder graph's SHA-256 (hex): names caches of its outputs and ties a decoder to it."""
        return self.manifest["files"][self.manifest["encoder"]["file"]]["sha256"]

    @property
    def provenance(self) -> dict:
        """Where the encoder's weights come from: "source" names it, other keys say how; {} when unrecorded."""
        return self.manifest.get("provenance", {})

    @property
    def has_decoder(self) -> bool:
        return isinstance(self.manifest.get("decoder"), dict)

    @property
    def decoder(self) -> DecoderSection | None:
        """The temporal decoder's section; None when the bundle gives per-frame poses only."""
        if not self.has_decoder:
            return None
        return DecoderSection.from_dict(self.manifest["decoder"], self.path / MANIFEST_NAME)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_bundle_path() -> Path:
    """The bundle that ships inside the package (trained on the synthetic world)."""
    return Path(__file__).resolve().parent / "default_bundle"


def load_bundle(path: str | os.PathLike | None = None, verify_checksums: bool = True) -> Bundle:
    """Read and check the bundle at `path` (the shipped default when None).

    Raises BundleError naming the file and what to do when the folder or manifest is missing or malformed,
    the format version differs, a listed file is absent, or a checksum does not match.
    """
    folder = Path(path) if path is not None else default_bundle_path()
    manifest_path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise BundleError(f"bundle folder {folder} does not exist; pass the folder written by "
                          "`fasthmr convert-hmr2` or `fasthmr train`, or omit it to use the default bundle")
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path} is missing: {folder} is not a model bundle (or was only partly copied)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{manifest_path} is not valid JSON ({error}); the bundle is corrupt: rebuild or re-copy it")
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{manifest_path} is not a {BUNDLE_FORMAT} manifest")
    version = manifest.get("format_version")
    if version != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path} has format version {version!r}, this fasthmr reads version {BUNDLE_FORMAT_VERSION}; "
            "re-export the bundle with this version of fasthmr"
        )
    for section, key in (("encoder", "file"), ("encoder", "config"), ("encoder", "camera_anchor"),
                         ("body_model", "file")):
        if not isinstance(manifest.get(section), dict) or key not in manifest[section]:
            raise BundleError(f"{manifest_path} lacks {section}.{key}; the bundle is incomplete: rebuild it")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{manifest_path} lists no files; the bundle is incomplete: rebuild it")
    for name, record in files.items():
        file_path = folder / name
        if not file_path.is_file():
            raise BundleError(f"{file_path} is listed in the manifest but missing; re-copy the whole bundle folder")
        if verify_checksums and sha256_of(file_path) != record.get("sha256"):
            raise BundleError(f"{file_path} does not match its checksum in {manifest_path}; "
                              "the file is corrupt or was changed: re-copy or rebuild the bundle")
    if manifest["encoder"]["camera_anchor"] not in CAMERA_ANCHORS:
        raise BundleError(f"{manifest_path}: encoder.camera_anchor is {manifest['encoder']['camera_anchor']!r}, "
                          f"not one of {CAMERA_ANCHORS}; rebuild the bundle")
    bundle = Bundle(path=folder, manifest=manifest)
    try:
        bundle.encoder_config
    except FastHMRError as error:
        raise BundleError(f"{manifest_path}: {error}") from None
    return bundle


def write_bundle(out: str | os.PathLike, files: dict[str, Path], manifest: dict, overwrite: bool = False) -> Bundle:
    """Write a bundle folder atomically.

    Args:
        out: the bundle folder to create.
        files: bundle-relative name -> existing file to copy in (e.g. "encoder.onnx" -> a temp export).
        manifest: the manifest's content without "format", "format_version" and "files" (added here).
        overwrite: replace an existing bundle at `out`; otherwise an existing `out` is an error.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists; choose another --out or remove it first")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    # mkdtemp makes the folder private (0700); a bundle is read by other users (a node's service account).
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    try:
        records = {}
        for name, source in files.items():
            target = staging / name
            shutil.copyfile(source, target)
            records[name] = {"sha256": sha256_of(target), "bytes": target.stat().st_size}
        full = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION, **manifest, "files": records}
        (staging / MANIFEST_NAME).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, retired / out.name)
            os.replace(staging, out)
            shutil.rmtree(retired)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_bundle(out)


def _describe_merge(plan: MergePlan, config: EncoderConfig) -> str:
    if plan == MergePlan():
        return "none"
    return (f"ECLM {config.depth} -> {len(plan.block_groups(config.depth))} blocks "
            f"(windows {[list(w) for w in plan.merged_windows]}), Mask-ToMe {list(plan.token_schedule)} -> "
            f"{plan.remaining_tokens} tokens")


def describe_bundle(bundle: Bundle) -> str:
    """A human-readable summary followed by the full manifest (what `fasthmr info` prints)."""
    manifest = bundle.manifest
    config = bundle.encoder_config
    provenance = bundle.provenance
    size = sum(record["bytes"] for record in manifest["files"].values())
    lines = [
        f"bundle        {bundle.path}",
        f"provenance    {provenance.get('source', 'unknown')}"
        + (f" ({provenance['description']})" if provenance.get("description") else ""),
        f"encoder       {manifest['encoder']['file']}: {config.depth} blocks x {config.width}, "
        f"{config.num_heads} heads; head {config.head_depth} layers x {config.head_width}",
        f"merging       {_describe_merge(bundle.merge_plan, config)}",
        f"body model    {manifest['body_model']['file']} ({manifest['body_model'].get('name', 'unnamed')})",
        f"decoder       {_describe_decoder(bundle.decoder)}",
        f"files         {len(manifest['files'])}, {size / 1e6:.1f} MB",
        "",
        json.dumps(manifest, indent=2),
    ]
    return "\n".join(lines)


def _describe_decoder(section: DecoderSection | None) -> str:
    if section is None:
        return "none (per-frame poses)"
    config = section.config
    return (f"{section.file}: window {section.window} frames, latents {config['latent_tokens']} x "
            f"{config['latent_size']}, width {config['width']}")
