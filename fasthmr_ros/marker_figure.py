"""`python -m fasthmr_ros.marker_figure --out docs/node_markers.png`: an RViz-like picture drawn from the
node's own ~/markers and TF body frames for a synthetic camera frame (for the README; no RViz here).

One rendered 640x480 frame of the synthetic world goes through the node's frame path (FrameProcessor over
the library's StreamPipeline, as the node runs it, mesh included); the serialised MarkerArray it would publish
is deserialised, and its TRIANGLE_LIST meshes (shaded per face, in each track's colour) and LINE_LIST skeletons
are drawn with matplotlib in the camera optical frame, with the /tf body frames (body_<id>: x red, y green,
z blue, as RViz draws axes), next to the camera image with the segmentation outlined.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

# Seen from behind and above the camera; the camera frame's y points down, so plot (x, z, -y).
VIEW_ELEVATION_DEG, VIEW_AZIMUTH_DEG = 18.0, -72.0
LIGHT = np.array([0.3, -0.8, -0.5]) / np.linalg.norm([0.3, -0.8, -0.5])  # towards the light, camera frame
PALETTE_COLOURS = 128  # the PNG is stored with a palette: a few hundred KB instead of a few MB
AXIS_LENGTH = 0.5  # m, the drawn length of a body frame's axes
AXIS_COLOURS = ((1.0, 0.0, 0.0), (0.0, 0.7, 0.0), (0.0, 0.0, 1.0))  # x, y, z, as RViz's TF display


def body_frames(transforms, camera_frame: str):
    """[(child frame id, origin (3,), axes (3, 3): columns x, y, z)] of the geometry_msgs/TransformStamped whose
    parent is the camera frame: the body frames, not the frames under them."""
    frames = []
    for transform in transforms:
        if transform.header.frame_id != camera_frame:
            continue
        rotation, translation = transform.transform.rotation, transform.transform.translation
        x, y, z, w = rotation.x, rotation.y, rotation.z, rotation.w
        axes = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        frames.append((transform.child_frame_id, np.array([translation.x, translation.y, translation.z]), axes))
    return frames


def marker_geometry(markers):
    """(meshes, skeletons) of a list of visualization_msgs/Marker: lists of ((N, 3, 3) triangles or
    (N, 2, 3) segments, (r, g, b, a)) in the markers' frame."""
    from visualization_msgs.msg import Marker

    meshes, skeletons = [], []
    for marker in markers:
        points = np.array([[point.x, point.y, point.z] for point in marker.points]).reshape(-1, 3)
        colour = (marker.color.r, marker.color.g, marker.color.b, marker.color.a)
        if marker.type == Marker.TRIANGLE_LIST:
            meshes.append((points.reshape(-1, 3, 3), colour))
        elif marker.type == Marker.LINE_LIST:
            skeletons.append((points.reshape(-1, 2, 3), colour))
    return meshes, skeletons


def draw(image: np.ndarray, mask: np.ndarray, markers, intrinsics: np.ndarray, caption: str, frames=()):
    """The figure: camera image with mask outlines (left), markers and body frames (body_frames()) in 3D (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection

    figure = plt.figure(figsize=(12.0, 4.8), dpi=100)
    left = figure.add_axes([0.01, 0.08, 0.42, 0.86])
    left.imshow(image)
    edges = (mask != np.roll(mask, 1, axis=0)) | (mask != np.roll(mask, 1, axis=1))
    left.contour(edges & (mask > 0), levels=[0.5], colors="white", linewidths=0.6)
    left.set_title("camera frame and person segmentation", fontsize=10)
    left.axis("off")

    # Drawn in the order added (meshes, then skeletons on top), as RViz shows lines through translucent meshes.
    axes = figure.add_axes([0.45, 0.05, 0.53, 0.88], projection="3d", computed_zorder=False)
    meshes, skeletons = marker_geometry(markers)
    to_plot = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])  # camera (x, y, z) -> plot (x, z, -y)
    everything = []
    for triangles, colour in meshes:
        normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
        normals /= np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)
        shade = 0.35 + 0.65 * np.abs(normals @ LIGHT)
        face_colours = np.concatenate([shade[:, None] * np.array(colour[:3]), np.full((len(shade), 1), colour[3])], 1)
        plotted = triangles @ to_plot.T
        axes.add_collection3d(Poly3DCollection(plotted, facecolors=face_colours, linewidths=0))
        everything.append(plotted.reshape(-1, 3))
    for segments, colour in skeletons:
        plotted = segments @ to_plot.T
        axes.add_collection3d(Line3DCollection(plotted, colors=[(1.0, 1.0, 1.0, 1.0)], linewidths=1.4))
        everything.append(plotted.reshape(-1, 3))
    for name, origin, frame_axes in frames:
        ends = origin + AXIS_LENGTH * frame_axes.T  # row k: the tip of axis k
        segments = np.stack([np.broadcast_to(origin, (3, 3)), ends], axis=1) @ to_plot.T
        axes.add_collection3d(Line3DCollection(segments, colors=AXIS_COLOURS, linewidths=3.0))
        axes.text(*(segments[2, 1] + [0.0, 0.0, 0.05]), name, fontsize=7, color="black")
    # The camera: its centre and the image's corners at 1 m depth.
    height, width = image.shape[:2]
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height], [0, 0]], float)
    rays = np.linalg.solve(intrinsics, np.concatenate([corners, np.ones((5, 1))], axis=1).T).T @ to_plot.T
    for ray in rays[:4]:
        axes.plot(*np.stack([np.zeros(3), ray]).T, color="0.5", linewidth=0.7)
    axes.plot(*rays.T, color="0.5", linewidth=0.7)

    # Frame the people and the camera: the cube around them, with a little room.
    points = np.concatenate(everything + [np.zeros((1, 3))])
    centre, half = (points.max(0) + points.min(0)) / 2, (points.max(0) - points.min(0)).max() / 2 + 0.1
    for setter, middle in zip((axes.set_xlim, axes.set_ylim, axes.set_zlim), centre):
        setter(middle - half, middle + half)
    axes.set_box_aspect((1, 1, 1), zoom=1.1)
    axes.view_init(elev=VIEW_ELEVATION_DEG, azim=VIEW_AZIMUTH_DEG)
    axes.set_xlabel("x (m)", fontsize=8)
    axes.set_ylabel("z, forward (m)", fontsize=8)
    axes.set_zlabel("-y, up (m)", fontsize=8)
    axes.tick_params(labelsize=7)
    figure.text(0.715, 0.955, "~/markers and /tf body frames (x red = facing, z blue = up), camera optical frame",
                fontsize=10, ha="center")
    figure.text(0.01, 0.02, caption, fontsize=8, color="0.3")
    return figure


def write_figure(bundle_path: Path | None, out: Path, seed: int, people: int) -> Path:
    from rclpy.serialization import deserialize_message
    from PIL import Image
    from tf2_msgs.msg import TFMessage
    from visualization_msgs.msg import MarkerArray

    from fasthmr_model.stream import StreamPipeline
    from fasthmr_ros.bench import frame_messages, synthetic_frames
    from fasthmr_ros.frame_processor import FrameProcessor

    stream = StreamPipeline(bundle_path)
    ((image, mask, intrinsics),) = synthetic_frames(stream.body_model, people, 1, seed=seed)
    outputs = FrameProcessor(stream).process(frame_messages(image, mask, intrinsics, 1.0), markers_wanted=True)
    markers = deserialize_message(outputs.markers, MarkerArray).markers
    frames = body_frames(deserialize_message(outputs.tf, TFMessage).transforms, outputs.bodies.header.frame_id)
    provenance = stream.bundle.provenance
    caption = (f"bundle: {provenance.get('source', 'unknown')} ({provenance.get('description', '')}); "
               f"synthetic frame, seed {seed}; drawn from the node's MarkerArray and TFMessage by "
               "fasthmr_ros.marker_figure")
    figure = draw(image, mask, markers, intrinsics, caption, frames)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.open(buffer).convert("RGB")
    # An adaptive palette keeps the image's common colours; the axes' pure colours cover too few pixels to get
    # their own entries, so they are added.
    reserved = [round(255 * channel) for colour in AXIS_COLOURS for channel in colour]
    adaptive_colours = PALETTE_COLOURS - len(AXIS_COLOURS)
    adaptive = picture.quantize(adaptive_colours).getpalette()[:3 * adaptive_colours]
    palette = Image.new("P", (1, 1))
    palette.putpalette(adaptive + reserved)
    picture.quantize(palette=palette, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fasthmr_ros.marker_figure", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--bundle", type=Path, help="model bundle (default: the shipped one)")
    parser.add_argument("--seed", type=int, default=25, help="seed of the synthetic frame (default 25)")
    parser.add_argument("--people", type=int, default=3, help="people in the frame (default 3)")
    args = parser.parse_args(argv)
    out = write_figure(args.bundle, args.out, args.seed, args.people)
    print(f"wrote {out} ({out.stat().st_size / 1000:.0f} KB)")


if __name__ == "__main__":
    main()
