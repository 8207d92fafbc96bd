"""Model bundles: a folder with the ONNX graphs, the body model and one JSON manifest.

The encoder graph is a contract (`ENCODER_CONTRACT`, written into every manifest) so that programs outside
Python can run it. A bundle is sealed: loading checks the format version, that every file is a plain name in
the folder, that every file a section names is listed, and every file's size and SHA-256; writing builds the
bundle in a staging folder beside the target and moves it into place, so a failed write leaves nothing behind.
Run-time module: numpy and the standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from fasthmr_model.body.skeleton import NUM_BETAS
from fasthmr_model.encoder.config import CAM_SIZE, IMAGE_HEIGHT, IMAGE_WIDTH, NUM_TOKENS, POSE_6D_SIZE, EncoderConfig
from fasthmr_model.encoder.merge_plan import MergePlan
from fasthmr_model.errors import BundleError, FastHMRError
from fasthmr_model.staging import move_into_place, staging_folder

BUNDLE_FORMAT = "fasthmr-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
ENCODER_FILE = "encoder.onnx"
BODY_MODEL_FILE = "body_model.npz"
# The largest manifest read: the shipped one is about 30 kB (the decoder's noise sample is most of it).
MANIFEST_MAX_BYTES = 4 * 1024 * 1024

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

    def file_sha256(self, name: str) -> str:
        """The SHA-256 (hex) of one of the bundle's files, as the manifest records it."""
        return self.manifest["files"][name]["sha256"]

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

    A bundle is sealed: its files are plain names inside its folder, every file a section names (encoder,
    body model, decoder) is listed in `files`, and every listed file has its size and SHA-256. Raises
    BundleError naming the file and what to do when the folder or manifest is missing, malformed or too large,
    the format version differs, a name leaves the folder, a named file is unlisted or absent, or a size or
    checksum does not match.
    """
    folder = Path(path) if path is not None else default_bundle_path()
    manifest_path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise BundleError(f"bundle folder {folder} does not exist; pass the folder written by "
                          "`fasthmr convert-hmr2` or `fasthmr train`, or omit it to use the default bundle")
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path} is missing: {folder} is not a model bundle (or was only partly copied)")
    manifest = _read_manifest(manifest_path)
    version = manifest.get("format_version")
    if version != BUNDLE_FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path} has format version {version!r}, this fasthmr reads version {BUNDLE_FORMAT_VERSION}; "
            "re-export the bundle with this version of fasthmr"
        )
    for section, key, kind in (("encoder", "file", str), ("encoder", "config", dict), ("encoder", "camera_anchor", str),
                               ("body_model", "file", str)):
        if not isinstance(manifest.get(section), dict) or not isinstance(manifest[section].get(key), kind):
            raise BundleError(f"{manifest_path} lacks {section}.{key} (a {kind.__name__}); the bundle is incomplete "
                              "or was edited: rebuild it")
    if "decoder" in manifest and not isinstance(manifest["decoder"], dict):
        raise BundleError(f"{manifest_path}: the decoder section is not an object; rebuild the bundle")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{manifest_path} lists no files; the bundle is incomplete: rebuild it")
    named = {f"{section}.file": manifest[section].get("file") for section in ("encoder", "body_model", "decoder")
             if isinstance(manifest.get(section), dict)}
    for field, name in named.items():
        if name not in files:
            raise BundleError(f"{manifest_path}: {field} {name!r} is not among the checksummed files; a bundle loads "
                              "only files it lists: rebuild the bundle")
    inside = folder.resolve()
    for name, record in files.items():
        if not _is_plain_name(name):
            raise BundleError(f"{manifest_path} lists {name!r}, which is not a plain file name inside the bundle "
                              "folder; a bundle never reads outside its folder: rebuild it")
        file_path = folder / name
        if not file_path.is_file() or file_path.resolve().parent != inside:
            raise BundleError(f"{file_path} is listed in the manifest but missing (or links outside the bundle); "
                              "re-copy the whole bundle folder")
        if (not isinstance(record, dict) or not isinstance(record.get("sha256"), str)
                or type(record.get("bytes")) is not int):
            raise BundleError(f"{manifest_path}: the record of {name} needs a sha256 and a byte count; rebuild the bundle")
        if file_path.stat().st_size != record["bytes"] or (verify_checksums and sha256_of(file_path) != record["sha256"]):
            raise BundleError(f"{file_path} does not match its size or checksum in {manifest_path}; "
                              "the file is corrupt or was changed: re-copy or rebuild the bundle")
    if manifest["encoder"]["camera_anchor"] not in CAMERA_ANCHORS:
        raise BundleError(f"{manifest_path}: encoder.camera_anchor is {manifest['encoder']['camera_anchor']!r}, "
                          f"not one of {CAMERA_ANCHORS}; rebuild the bundle")
    bundle = Bundle(path=folder, manifest=manifest)
    try:
        bundle.encoder_config
        bundle.merge_plan
        bundle.decoder
    except FastHMRError as error:
        raise BundleError(f"{manifest_path}: {error}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise BundleError(f"{manifest_path} has a malformed section ({type(error).__name__}: {error}); the bundle "
                          "was edited or written by another tool: rebuild it") from None
    return bundle


def _read_manifest(manifest_path: Path) -> dict:
    """The manifest's JSON object, refused when larger than MANIFEST_MAX_BYTES or nested too deep."""
    size = manifest_path.stat().st_size
    if size > MANIFEST_MAX_BYTES:
        raise BundleError(f"{manifest_path} is {size / 1e6:.1f} MB; a manifest is at most {MANIFEST_MAX_BYTES / 1e6:.0f} "
                          "MB: this is not a fasthmr bundle")
    try:
        manifest = json.loads(manifest_path.read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise BundleError(f"{manifest_path} is not valid JSON ({type(error).__name__}: {error}); the bundle is corrupt: "
                          "rebuild or re-copy it") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{manifest_path} is not a {BUNDLE_FORMAT} manifest")
    return manifest


def _is_plain_name(name) -> bool:
    """A file name with no folder part: not empty, not . or .., no separator, no NUL."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and "\0" not in name and Path(name).name == name)


def write_bundle(out: str | os.PathLike, files: dict[str, Path], manifest: dict, overwrite: bool = False) -> Bundle:
    """Write a bundle folder atomically: built in a staging folder beside `out` (fasthmr_model.staging) and moved
    into place; replacing an existing bundle exchanges the two, so `out` holds the old bundle or the new one.

    Args:
        out: the bundle folder to create.
        files: bundle-relative name -> existing file to copy in (e.g. "encoder.onnx" -> a temp export).
        manifest: the manifest's content without "format", "format_version" and "files" (added here).
        overwrite: replace an existing bundle at `out`; otherwise an existing `out` is an error.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists; choose another --out or remove it first")
    bad = [name for name in files if not _is_plain_name(name)]
    if bad:
        raise BundleError(f"bundle file names must be plain names inside the folder, got {bad}")
    staging = staging_folder(out)
    try:
        records = {}
        for name, source in files.items():
            target = staging / name
            shutil.copyfile(source, target)
            records[name] = {"sha256": sha256_of(target), "bytes": target.stat().st_size}
        full = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION, **manifest, "files": records}
        (staging / MANIFEST_NAME).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
        move_into_place(staging, out, overwrite=overwrite)
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
