"""The node's parameters: names, types, descriptions, ranges, and where their defaults come from.

Every default lives in config/fasthmr.yaml (and, for the library's settings, in the dataclass the
parameters fill, with the same field names; a test keeps the two equal). The node reads that file
itself, so `fasthmr_node` with no arguments runs with the same values as the launch file.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from fasthmr_model.data.crop import MAX_PERSONS_LIMIT, PreprocessConfig
from fasthmr_model.errors import FastHMRError
from fasthmr_model.providers import PRECISIONS
from fasthmr_model.runtime import MAX_BATCH_LIMIT, PROVIDER_CHOICES, RuntimeConfig
from fasthmr_model.stream import StreamConfig
from fasthmr_ros.diagnostics import DiagnosticsConfig
from fasthmr_ros.inputs import MASK_MODES, TRANSPORTS, UNMATCHED_IMAGE_POLICIES, InputOptions
from fasthmr_ros.outputs import MarkerConfig
from fasthmr_ros.pairing import PairingConfig
from fasthmr_ros.standard_outputs import StandardOutputsConfig

PACKAGE_NAME = "fasthmr_ros"
PARAMS_FILE_NAME = "fasthmr.yaml"


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter. kind: bool | int | float | str. low/high: an inclusive range (numbers); choices:
    the allowed strings; read_only: cannot change after the node starts."""

    name: str
    kind: type
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False


PARAMETERS = (
    ParameterSpec("autostart", bool, "configure and activate at start, without a lifecycle manager", read_only=True),
    ParameterSpec("bundle", str, "model bundle folder; empty = the bundle shipped in the package", read_only=True),
    ParameterSpec("body_model", str, "SMPL-format body model file (.pkl/.npz); empty = the bundle's", read_only=True),
    ParameterSpec("runtime.provider", str, "the encoder's ONNX Runtime provider; auto = TensorRT, CUDA, else CPU (the "
                  "first whose libraries load); an explicit one not obtained fails configure",
                  choices=PROVIDER_CHOICES, read_only=True),
    ParameterSpec("runtime.decoder_provider", str, "the temporal decoder's provider (the same choices)",
                  choices=PROVIDER_CHOICES, read_only=True),
    ParameterSpec("runtime.threads", int, "ONNX Runtime intra-op threads; 0 = its choice", 0, 256, read_only=True),
    ParameterSpec("runtime.max_batch", int, "persons per encoder call (TensorRT profile 1..max_batch, GPU warm-up at "
                  "each size); more run in chunks", 1, MAX_BATCH_LIMIT, read_only=True),
    ParameterSpec("runtime.precision", str, "auto = fp16 on a GPU, fp32 on the CPU", choices=PRECISIONS,
                  read_only=True),
    ParameterSpec("runtime.device_id", int, "CUDA device", 0, 64, read_only=True),
    ParameterSpec("runtime.cache_dir", str, "TensorRT engines and fp16 graphs; empty = ~/.cache/fasthmr/runtime",
                  read_only=True),
    ParameterSpec("runtime.io_binding", bool, "inputs and outputs in buffers bound once per batch size",
                  read_only=True),
    ParameterSpec("runtime.cuda_graph", bool, "CUDA provider: replay a captured CUDA graph per batch size",
                  read_only=True),
    ParameterSpec("image_topic", str, "camera image (sensor_msgs/Image)", read_only=True),
    ParameterSpec("camera_info_topic", str, "the camera's CameraInfo (K)", read_only=True),
    ParameterSpec("mask_topic", str, "person segmentation (sensor_msgs/Image, mono8/mono16 instance ids)",
                  read_only=True),
    ParameterSpec("image_transport", str, "raw: sensor_msgs/Image on image_topic; compressed: CompressedImage (JPEG "
                  "or PNG) on <image_topic>/compressed", choices=TRANSPORTS, read_only=True),
    ParameterSpec("mask_transport", str, "raw, or compressed: lossless PNG CompressedImage on <mask_topic>/compressed",
                  choices=TRANSPORTS, read_only=True),
    ParameterSpec("mask_mode", str, "instances: 0 = background, k = person k; binary: all non-zero pixels are "
                  "one person", choices=MASK_MODES),
    ParameterSpec("image_rectified", bool, "the images are rectified (image_rect): use CameraInfo's P without "
                  "distortion; false: K with the distortion model and D"),
    ParameterSpec("max_image_pixels", int, "images and masks with more pixels are rejected unread", 1, 2**31 - 1),
    ParameterSpec("qos.reliability", str, "reliability of the input subscriptions", choices=("best_effort", "reliable"),
                  read_only=True),
    ParameterSpec("qos.depth", int, "history depth of the input subscriptions", 1, 1000, read_only=True),
    ParameterSpec("sync.tolerance", float, "largest stamp difference between an image and its mask (s)", 0.0, 1.0),
    ParameterSpec("sync.queue_size", int, "images and masks kept waiting for a partner", 1, 100),
    ParameterSpec("sync.mask_timeout", float, "wall time an image waits for its mask (s)", 0.0, 10.0),
    ParameterSpec("unmatched_images", str, "images without a mask: process (the whole image as one person) or drop",
                  choices=UNMATCHED_IMAGE_POLICIES),
    ParameterSpec("inference_queue_size", int, "paired frames waiting for the model; newer ones replace the oldest",
                  1, 100),
    ParameterSpec("preprocess.box_scale", float, "square crop side relative to the 3:4-expanded mask box", 0.5, 4.0),
    ParameterSpec("preprocess.min_person_pixels", int, "instances with fewer mask pixels are skipped", 1, 2**31 - 1),
    ParameterSpec("preprocess.max_persons", int, "persons per frame, the largest first; the others are counted and "
                  "skipped", 1, MAX_PERSONS_LIMIT),
    ParameterSpec("preprocess.person_token_min_fraction", float,
                  "a token is a person token from this share of person pixels (0 = any)", 0.0, 0.999),
    ParameterSpec("preprocess.threads", int, "threads that crop the persons of a frame (1 = the inference thread)",
                  1, 64),
    ParameterSpec("tracking.min_iou", float, "box overlap that continues a track", 0.001, 1.0),
    ParameterSpec("tracking.max_gap", float, "seconds a track may go unseen before it ends", 0.0, 60.0),
    ParameterSpec("tracking.velocity_window", float, "seconds of a track's pelvis positions its velocity is fitted "
                  "over", 0.05, 10.0),
    ParameterSpec("markers.mesh_rate", float, "meshes per second per track in ~/markers (by image stamps); 0 = never",
                  0.0, 1000.0),
    ParameterSpec("markers.line_width", float, "skeleton line width (m)", 0.001, 1.0),
    ParameterSpec("markers.mesh_alpha", float, "mesh opacity", 0.0, 1.0),
    ParameterSpec("markers.lifetime", float, "seconds a skeleton stays in RViz unless replaced (a mesh: one mesh "
                  "period more); 0 = until deleted", 0.0, 60.0),
    ParameterSpec("outputs.joint_frames", bool, "also put every joint in TF (body_<id>_<joint>, child of body_<id>)"),
    ParameterSpec("outputs.rep155", bool, "publish the REP-155 body topics (/humans/bodies/...)", read_only=True),
    ParameterSpec("diagnostics.min_rate", float, "lowest expected image rate (Hz); below it /diagnostics warns",
                  0.0, 1000.0),
    ParameterSpec("diagnostics.max_rate", float, "highest expected image rate (Hz); above it /diagnostics warns",
                  0.0, 1000.0),
    ParameterSpec("diagnostics_period", float, "seconds between /diagnostics messages", 0.05, 60.0, read_only=True),
)
SPECS = {spec.name: spec for spec in PARAMETERS}

# The namespace of the top-level parameters that fill a dataclass (mask_mode, unmatched_images, ...).
INPUT_OPTIONS = ""
# Parameter namespace -> the dataclass its parameters fill (parameter name = namespace.field).
CONFIG_CLASSES = {
    "runtime": RuntimeConfig,
    "preprocess": PreprocessConfig,
    "sync": PairingConfig,
    "tracking": StreamConfig,
    "markers": MarkerConfig,
    "outputs": StandardOutputsConfig,
    "diagnostics": DiagnosticsConfig,
    INPUT_OPTIONS: InputOptions,
}


def config_file(name: str) -> Path:
    """A file of config/: installed in share/fasthmr_ros/config (colcon), else beside the package's source
    folder (a source checkout or `pip install -e`)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        installed = Path(get_package_share_directory(PACKAGE_NAME)) / "config" / name
        if installed.is_file():
            return installed
    except (ImportError, PackageNotFoundError, ValueError, OSError):  # OSError: AMENT_PREFIX_PATH unset
        pass
    return Path(__file__).resolve().parent.parent / "config" / name


def default_params_file() -> Path:
    """config/fasthmr.yaml (config_file)."""
    return config_file(PARAMS_FILE_NAME)


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def load_defaults(path: str | os.PathLike | None = None) -> dict:
    """Parameter name -> default value from a ROS 2 parameters file (the `/**` section).

    Raises FastHMRError when the file is missing, is not a parameters file, lacks or adds a parameter,
    or gives a value of the wrong type.
    """
    path = Path(path) if path is not None else default_params_file()
    if not path.is_file():
        raise FastHMRError(f"the parameters file {path} does not exist; pass the repository's config/{PARAMS_FILE_NAME}"
                           " or install the package with colcon")
    try:
        tree = yaml.safe_load(path.read_text())
        values = _flatten(tree["/**"]["ros__parameters"])
    except (yaml.YAMLError, KeyError, TypeError) as error:
        raise FastHMRError(f"{path} is not a ROS 2 parameters file with a '/**: ros__parameters:' section ({error})")
    missing, unknown = sorted(set(SPECS) - set(values)), sorted(set(values) - set(SPECS))
    if missing or unknown:
        raise FastHMRError(f"{path}: missing parameters {missing}, unknown parameters {unknown}")
    for name, value in values.items():
        kind = SPECS[name].kind
        if kind is float and type(value) is int:
            values[name] = float(value)
        elif type(value) is not kind:
            raise FastHMRError(f"{path}: {name} must be of type {kind.__name__}, got {value!r}")
    return values


def check_value(name: str, value) -> None:
    """Raises FastHMRError when value is not one of the parameter's choices or outside its range (rclpy checks
    ranges too; this also covers string choices and gives the message the node logs)."""
    spec = SPECS[name]
    if spec.choices and value not in spec.choices:
        raise FastHMRError(f"{name} must be one of {list(spec.choices)}, got {value!r}")
    if spec.low is not None and not spec.low <= value <= spec.high:
        raise FastHMRError(f"{name} must be in [{spec.low}, {spec.high}], got {value!r}")


def build_config(namespace: str, values: dict):
    """The dataclass of a parameter namespace (CONFIG_CLASSES) filled from parameter values; raises
    FastHMRError (from the dataclass's own checks) for a bad combination."""
    config_class = CONFIG_CLASSES[namespace]
    prefix = f"{namespace}." if namespace else ""
    return config_class(**{field.name: values[prefix + field.name] for field in dataclasses.fields(config_class)})
