"""visualization_msgs/MarkerArray serialised to CDR bytes with each marker's points taken from a numpy
array, so that a mesh of thousands of triangles costs one memory copy instead of a Python object per
vertex. The CDR writer also serves the TF and REP-155 outputs (fasthmr_ros.standard_outputs).

rclpy publishes such bytes as they are (Publisher.publish accepts serialised messages). Building the
15,000 geometry_msgs/Point objects of one synthetic-body mesh took 12 ms here and serialising them 7 ms
more; writing the same points from numpy takes well under a millisecond. Everything else of a marker is
read from the Marker object, so the output is the MarkerArray that rclpy would serialise (tested by
deserialising it with rclpy).

The layout is plain CDR (XCDR1, little-endian) as ROS 2's rmw implementations use it: a 4-byte
encapsulation header, then every field in declaration order, each primitive aligned to its own size
relative to the end of that header, sequences and strings as a uint32 count followed by the elements
(strings with their terminating NUL).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
from visualization_msgs.msg import Marker

# CDR_LE: plain CDR, little-endian, no options.
ENCAPSULATION_HEADER = b"\x00\x01\x00\x00"


class CdrWriter:
    """Appends little-endian CDR to a list of byte strings; `size` counts from the encapsulation header's end."""

    def __init__(self) -> None:
        self.parts: list[bytes] = [ENCAPSULATION_HEADER]
        self.size = 0

    def align(self, alignment: int) -> None:
        padding = -self.size % alignment
        if padding:
            self.raw(bytes(padding))

    def raw(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)

    def pack(self, fmt: str, *values, alignment: int) -> None:
        """Primitives of one size (fmt without byte order, e.g. "3d"), aligned to `alignment` bytes."""
        self.align(alignment)
        self.raw(struct.pack("<" + fmt, *values))

    def count(self, value: int) -> None:
        self.pack("I", value, alignment=4)

    def string(self, text: str) -> None:
        data = text.encode() + b"\x00"
        self.count(len(data))
        self.raw(data)

    def octets(self, data) -> None:
        """A sequence<uint8> (bytes, array.array('B') or a list of ints)."""
        data = bytes(data)
        self.count(len(data))
        self.raw(data)

    def header(self, header) -> None:
        self.pack("iI", header.stamp.sec, header.stamp.nanosec, alignment=4)
        self.string(header.frame_id)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


def _write_points(writer: CdrWriter, points: np.ndarray) -> None:
    """sequence<geometry_msgs/Point> from an (N, 3) array: the count, then N x 3 float64."""
    writer.count(len(points))
    if len(points):
        writer.align(8)
        writer.raw(np.ascontiguousarray(points, dtype="<f8").tobytes())


def _write_marker(writer: CdrWriter, marker: Marker, points: np.ndarray | None) -> None:
    writer.header(marker.header)
    writer.string(marker.ns)
    writer.pack("3i", marker.id, marker.type, marker.action, alignment=4)
    pose = marker.pose
    writer.pack("7d", pose.position.x, pose.position.y, pose.position.z,
                pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w, alignment=8)
    writer.pack("3d", marker.scale.x, marker.scale.y, marker.scale.z, alignment=8)
    writer.pack("4f", marker.color.r, marker.color.g, marker.color.b, marker.color.a, alignment=4)
    writer.pack("iI", marker.lifetime.sec, marker.lifetime.nanosec, alignment=4)
    writer.pack("?", marker.frame_locked, alignment=1)
    if points is None:
        points = np.array([[point.x, point.y, point.z] for point in marker.points], dtype=np.float64).reshape(-1, 3)
    _write_points(writer, points)
    writer.count(len(marker.colors))
    for colour in marker.colors:
        writer.pack("4f", colour.r, colour.g, colour.b, colour.a, alignment=4)
    writer.string(marker.texture_resource)
    writer.header(marker.texture.header)
    writer.string(marker.texture.format)
    writer.octets(marker.texture.data)
    writer.count(len(marker.uv_coordinates))
    for uv in marker.uv_coordinates:
        writer.pack("2f", uv.u, uv.v, alignment=4)
    writer.string(marker.text)
    writer.string(marker.mesh_resource)
    writer.string(marker.mesh_file.filename)
    writer.octets(marker.mesh_file.data)
    writer.pack("?", marker.mesh_use_embedded_materials, alignment=1)


def serialize_marker_array(markers: Sequence[Marker], points: Sequence[np.ndarray | None] | None = None) -> bytes:
    """The CDR bytes of a MarkerArray holding `markers`.

    points[i], when given and not None, is marker i's points as an (N, 3) array (metres), used instead of
    markers[i].points (which is then ignored). Raises ValueError for an array of another shape.
    """
    points = [None] * len(markers) if points is None else list(points)
    if len(points) != len(markers):
        raise ValueError(f"{len(points)} point arrays for {len(markers)} markers")
    writer = CdrWriter()
    writer.count(len(markers))
    for marker, marker_points in zip(markers, points):
        if marker_points is not None and (marker_points.ndim != 2 or marker_points.shape[1] != 3):
            raise ValueError(f"marker points must be an (N, 3) array, got shape {marker_points.shape}")
        _write_marker(writer, marker, marker_points)
    return writer.getvalue()
