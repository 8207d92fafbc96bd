"""The node's frame path without DDS: output messages equal the library's stream results (bodies, people, TF body
frames, people_msgs, REP-155), markers serialise as rclpy would and expire, meshes follow the throttle and the
subscribers, vanished tracks clear the display, and bad frames are rejected with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from fasthmr_msgs.msg import SmplBody, SmplBodyArray
from hri_msgs.msg import NormalizedRegionOfInterest2D, Skeleton2D
from geometry_msgs.msg import Point
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import ColorRGBA, Header
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import Marker, MarkerArray, UVCoordinate

from fasthmr_model.body.rotations import matrix_to_quaternion
from fasthmr_model.body.skeleton import JOINT_INDEX, KinematicTree
from fasthmr_model.body_frames import SMPL_TO_REP103_AXES
from fasthmr_model.data.lens import CameraModel
from fasthmr_model.stream import StreamConfig, StreamPipeline
from fasthmr_ros.bench import frame_messages
from fasthmr_ros.frame_processor import FrameProcessor, FrameRejected
from fasthmr_ros.image_conversion import array_to_image
from fasthmr_ros.inputs import InputOptions
from fasthmr_ros.marker_cdr import serialize_marker_array
from fasthmr_ros.outputs import MESH_NAMESPACE, SKELETON_NAMESPACE, MarkerConfig, OutputShapeError, _fixed
from fasthmr_ros.standard_outputs import StandardOutputsConfig

K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])


def frame(people=(3, 7)):
    """A 320x240 random image with rectangular persons of the given instance ids."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    mask = np.zeros((240, 320), np.uint8)
    for index, instance_id in enumerate(people):
        mask[30 + 10 * index:200, 40 + 120 * index:90 + 120 * index] = instance_id
    return image, mask


def messages(image, mask, stamp, intrinsics=K):
    """The Frame of an rgb8 image, its mono8 mask and a CameraInfo with K = intrinsics."""
    return frame_messages(image, mask, intrinsics, stamp)


@pytest.fixture
def pipeline(untrained_tiny_bundle):
    return StreamPipeline(untrained_tiny_bundle)


@pytest.fixture
def processor(pipeline):
    return FrameProcessor(pipeline, marker_config=MarkerConfig(mesh_rate=2.0))


def markers_of(outputs):
    return deserialize_message(outputs.markers, MarkerArray).markers


def test_bodies_and_people_hold_the_library_results_under_the_image_header(processor, pipeline):
    image, mask = frame()
    frame_message = messages(image, mask, 12.5)
    image_message = frame_message.image
    outputs = processor.process(frame_message, markers_wanted=True)
    expected = pipeline.frames.process(image, mask, K)
    bodies = deserialize_message(serialize_message(outputs.bodies), SmplBodyArray)  # as a subscriber sees it
    assert bodies.header == image_message.header and outputs.people.header == image_message.header
    assert bodies.body_model == "fasthmr-synthetic-body-v1"
    assert [body.track_id for body in bodies.bodies] == [1, 2]
    for index, body in enumerate(bodies.bodies):
        np.testing.assert_array_equal(body.betas, expected.betas[index].astype(np.float32))
        np.testing.assert_array_equal(body.pose, expected.axis_angle[index].reshape(-1).astype(np.float32))
        np.testing.assert_array_equal(body.joints, expected.joints[index].reshape(-1).astype(np.float32))
        assert [body.translation.x, body.translation.y, body.translation.z] == expected.translation[index].tolist()
        x0, y0, x1, y1 = expected.boxes[index] + [0.5, 0.5, 0.5, 0.5]
        assert (body.box.x_offset, body.box.y_offset, body.box.width, body.box.height) == (x0, y0, x1 - x0, y1 - y0)
        assert body.pose_source == SmplBody.POSE_PER_FRAME and 0.0 < body.confidence <= 1.0
        pose = outputs.people.poses[index]
        assert [pose.position.x, pose.position.y, pose.position.z] == expected.joints[index, 0].tolist()
        quaternion = [pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w]
        body_axes = expected.rotmats[index, 0] @ SMPL_TO_REP103_AXES  # REP-103: x facing, y left, z up
        np.testing.assert_array_equal(body_axes[:, 0], expected.rotmats[index, 0][:, 2])
        np.testing.assert_allclose(quaternion, matrix_to_quaternion(body_axes), atol=1e-12)


def quaternion_matrix(rotation):
    """The rotation matrix of a geometry_msgs/Quaternion (an independent formula: Hamilton, x y z w)."""
    x, y, z, w = rotation.x, rotation.y, rotation.z, rotation.w
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def test_tf_people_and_rep155_hold_the_stream_results(pipeline):
    processor = FrameProcessor(pipeline, standard_outputs=StandardOutputsConfig(joint_frames=True))
    image, mask = frame()
    message = messages(image, mask, 3.25)
    header = message.image.header
    outputs = processor.process(message, markers_wanted=False)
    result = outputs.result
    # TF (CDR bytes, read back as rclpy would): body_<id>, REP-155's body_b<id> (the same frame), then each body's
    # 23 joint frames.
    tf = deserialize_message(outputs.tf, TFMessage)
    bodies = tf.transforms[:2]
    assert [t.child_frame_id for t in bodies] == ["body_1", "body_2"]
    aliases = tf.transforms[2:4]
    assert [(t.header.frame_id, t.child_frame_id) for t in aliases] == [("body_1", "body_b1"), ("body_2", "body_b2")]
    assert all(t.transform.rotation.w == 1.0 and t.transform.translation.x == 0.0 for t in aliases)
    assert all(t.header == header for t in bodies)
    for row, transform in enumerate(bodies):
        translation = transform.transform.translation
        assert [translation.x, translation.y, translation.z] == result.joints[row, 0].tolist()
        axes = quaternion_matrix(transform.transform.rotation)
        np.testing.assert_allclose(axes[:, 0], result.rotmats[row, 0][:, 2], atol=1e-9)  # x: facing
        np.testing.assert_allclose(axes[:, 1], result.rotmats[row, 0][:, 0], atol=1e-9)  # y: the body's left
        np.testing.assert_allclose(axes[:, 2], result.rotmats[row, 0][:, 1], atol=1e-9)  # z: up
        joints = [t for t in tf.transforms[4:] if t.header.frame_id == transform.child_frame_id]
        assert all(t.header.stamp == header.stamp for t in joints)
        assert len(joints) == 23
        head = next(t for t in joints if t.child_frame_id == f"{transform.child_frame_id}_head")
        offset = head.transform.translation
        in_camera = axes @ [offset.x, offset.y, offset.z] + result.joints[row, 0]
        np.testing.assert_allclose(in_camera, result.joints[row, JOINT_INDEX["head"]], atol=1e-9)
        world = KinematicTree(pipeline.body_model.parents).world_rotations(result.rotmats[row:row + 1])[0]
        np.testing.assert_allclose(axes @ quaternion_matrix(head.transform.rotation),
                                   world[JOINT_INDEX["head"]] @ SMPL_TO_REP103_AXES, atol=1e-9)
    # people_msgs: names, positions, velocities, reliabilities.
    people = outputs.people_msgs
    assert people.header == header and [person.name for person in people.people] == ["1", "2"]
    for row, person in enumerate(people.people):
        assert [person.position.x, person.position.y, person.position.z] == result.joints[row, 0].tolist()
        assert [person.velocity.x, person.velocity.y, person.velocity.z] == [0.0, 0.0, 0.0]  # new tracks
        assert person.reliability == result.confidence[row]
    # REP-155: the tracked ids, each body's box and skeleton, normalised to the image.
    assert outputs.rep155.tracked.ids == ["b1", "b2"] and outputs.rep155.tracked.header == header
    for row, (roi_bytes, skeleton_bytes) in enumerate(outputs.rep155.bodies[track] for track in (1, 2)):
        roi = deserialize_message(roi_bytes, NormalizedRegionOfInterest2D)
        skeleton = deserialize_message(skeleton_bytes, Skeleton2D)
        assert roi.header == header and roi.c == np.float32(result.confidence[row])
        x0, y0, x1, y1 = result.boxes[row] + 0.5
        np.testing.assert_allclose([roi.xmin, roi.ymin, roi.xmax, roi.ymax], [x0 / 320, y0 / 240, x1 / 320, y1 / 240],
                                   atol=1e-6)
        assert len(skeleton.skeleton) == 18 and skeleton.header == header
        neck = result.joints[row, JOINT_INDEX["neck"]]
        u, v = (K @ neck)[:2] / neck[2]
        point = skeleton.skeleton[1]  # Skeleton2D.NECK
        np.testing.assert_allclose([point.x, point.y], [(u + 0.5) / 320, (v + 0.5) / 240], atol=1e-6)
        assert point.c == np.float32(result.confidence[row])
        assert skeleton.skeleton[0].c == 0.0  # NOSE: SMPL has none
    # Off: no REP-155 messages, no joint frames.
    processor.standard_outputs = StandardOutputsConfig(rep155=False)
    outputs = processor.process(messages(image, mask, 3.3), markers_wanted=False)
    assert outputs.rep155 is None and len(deserialize_message(outputs.tf, TFMessage).transforms) == 2
    empty = processor.process(messages(image, np.zeros_like(mask), 3.35), markers_wanted=False)
    assert empty.tf is None and not empty.people_msgs.people


def test_markers_expire_after_their_lifetime_and_meshes_a_mesh_period_later(pipeline):
    processor = FrameProcessor(pipeline, marker_config=MarkerConfig(mesh_rate=2.0, lifetime=0.25))
    image, mask = frame()
    lifetimes = {marker.ns: marker.lifetime.sec + marker.lifetime.nanosec * 1e-9
                 for marker in markers_of(processor.process(messages(image, mask, 1.0), markers_wanted=True))}
    assert lifetimes == {SKELETON_NAMESPACE: 0.25, MESH_NAMESPACE: 0.75}


def test_markers_draw_skeletons_every_frame_and_meshes_at_the_mesh_rate(processor, pipeline):
    image, mask = frame()
    faces = pipeline.body_model.faces
    pipeline.stream_config = StreamConfig(max_gap=2.0)  # the tracks live on over the pause before 2.8 s
    kinds = []
    # mesh_rate 2 Hz per track, one due mesh per frame: track 1 at 1.0 and 1.5, track 2 at 1.2 and 1.7.
    for stamp in (1.0, 1.2, 1.4, 1.5, 1.6, 1.7):
        outputs = processor.process(messages(image, mask, stamp), markers_wanted=True)
        markers = markers_of(outputs)
        kinds.append([(marker.ns, marker.id) for marker in markers])
        assert all(marker.header.stamp.sec == 1 for marker in markers)
    skeletons = [(SKELETON_NAMESPACE, 1), (SKELETON_NAMESPACE, 2)]
    mesh_1, mesh_2 = [(MESH_NAMESPACE, 1)], [(MESH_NAMESPACE, 2)]
    assert kinds == [skeletons + mesh_1, skeletons + mesh_2, skeletons, skeletons + mesh_1, skeletons,
                     skeletons + mesh_2]
    # Meshes two periods old are all drawn at once.
    late = markers_of(processor.process(messages(image, mask, 2.8), markers_wanted=True))
    assert [(marker.ns, marker.id) for marker in late] == skeletons + mesh_1 + mesh_2

    expected = pipeline.frames.process(image, mask, K)
    skeleton, mesh = markers[0], late[2]
    assert skeleton.type == Marker.LINE_LIST and mesh.type == Marker.TRIANGLE_LIST
    lines = np.array([[p.x, p.y, p.z] for p in skeleton.points]).reshape(-1, 2, 3)
    parents = pipeline.body_model.parents
    np.testing.assert_array_equal(lines[:, 0], expected.joints[0, 1:])
    np.testing.assert_array_equal(lines[:, 1], expected.joints[0, parents[1:]])
    triangles = np.array([[p.x, p.y, p.z] for p in mesh.points]).reshape(-1, 3, 3)
    np.testing.assert_array_equal(triangles, expected.vertices[0][faces])


def test_no_marker_subscriber_means_no_mesh_and_no_markers(processor, pipeline, monkeypatch):
    image, mask = frame()
    calls = []
    original = pipeline.frames.process
    monkeypatch.setattr(pipeline.frames, "process",
                        lambda *args, **kwargs: calls.append(kwargs) or original(*args, **kwargs))
    monkeypatch.setattr(pipeline, "vertices", lambda *args: calls.append("vertices"))
    outputs = processor.process(messages(image, mask, 1.0), markers_wanted=False)
    assert outputs.markers is None and calls == [{"with_vertices": False}]


def test_vanished_tracks_clear_the_display_and_redraw_the_rest(processor):
    image, mask = frame()
    processor.process(messages(image, mask, 1.0), markers_wanted=True)
    _, one_left = frame(people=(3,))
    markers = markers_of(processor.process(messages(image, one_left, 1.1), markers_wanted=True))
    assert markers[0].action == Marker.DELETEALL
    assert [(marker.ns, marker.id) for marker in markers[1:]] == [(SKELETON_NAMESPACE, 1), (MESH_NAMESPACE, 1)]
    nobody = np.zeros_like(mask)
    markers = markers_of(processor.process(messages(image, nobody, 1.2), markers_wanted=True))
    assert [marker.action for marker in markers] == [Marker.DELETEALL]
    assert processor.process(messages(image, nobody, 1.3), markers_wanted=True).markers is None
    processor.process(messages(image, mask, 1.4), markers_wanted=True)
    (clear,) = deserialize_message(processor.clear_markers(), MarkerArray).markers
    assert clear.action == Marker.DELETEALL and clear.header.frame_id == "camera_optical_frame"
    assert processor.clear_markers() is None


def test_mask_modes_and_missing_mask(pipeline):
    image, mask = frame()
    binary = FrameProcessor(pipeline, options=InputOptions(mask_mode="binary"))
    assert len(binary.process(messages(image, mask, 1.0), False).bodies.bodies) == 1
    mask_free = FrameProcessor(pipeline).process(messages(image, mask, 1.1)._replace(mask=None), False)
    expected = pipeline.frames.process(image, np.ones_like(mask), K)  # the whole image is one person
    np.testing.assert_array_equal(mask_free.bodies.bodies[0].betas, expected.betas[0].astype(np.float32))


def test_sixteen_bit_ids_work_and_masks_of_another_size_are_rejected(processor):
    image, mask = frame()
    frame_message = messages(image, mask, 1.0)
    wide_ids = array_to_image(mask.astype(np.uint16) * 1000, "mono16")
    assert len(processor.process(frame_message._replace(mask=wide_ids), False).bodies.bodies) == 2
    with pytest.raises(FrameRejected, match="same size") as caught:
        processor.process(frame_message._replace(mask=array_to_image(mask[:-1], "mono8")), False)
    assert caught.value.reason == "mask_size_mismatch"


def test_bad_image_mask_and_intrinsics_have_reasons(processor):
    image, mask = frame()
    frame_message = messages(image, mask, 1.0)
    frame_message.image.encoding = "yuv422"
    with pytest.raises(FrameRejected) as caught:
        processor.process(frame_message, False)
    assert caught.value.reason == "bad_image"
    frame_message = messages(image, mask, 1.0)
    frame_message.mask.step += 1
    with pytest.raises(FrameRejected) as caught:
        processor.process(frame_message, False)
    assert caught.value.reason == "bad_mask"
    with pytest.raises(FrameRejected, match="intrinsics") as caught:
        processor.process(messages(image, mask, 1.0, np.zeros((3, 3))), False)
    assert caught.value.reason == "bad_camera_info"
    with pytest.raises(FrameRejected) as caught:
        processor.process(messages(image, mask, 1.0)._replace(camera_info=None), False)
    assert caught.value.reason == "no_camera_info"


def test_fixed_size_fields_are_checked_before_they_are_filled():
    assert _fixed(np.ones((24, 3)), 72, "pose").shape == (72,)
    with pytest.raises(OutputShapeError, match="pose needs 72 values"):
        _fixed(np.ones((23, 3)), 72, "pose")


def test_marker_bytes_equal_what_rclpy_serialises():
    rng = np.random.default_rng(0)
    markers, points = [], []
    for k in range(4):  # every field set, with strings of every length modulo 4 to move the alignment
        marker = Marker(ns="n" * k, id=k - 1, type=Marker.TRIANGLE_LIST, action=k % 3, frame_locked=bool(k % 2),
                        text="hello"[:k], mesh_resource="m" * k, texture_resource="t" * (k % 2),
                        mesh_use_embedded_materials=k == 2)
        marker.header.frame_id, marker.header.stamp.sec, marker.header.stamp.nanosec = "cam" * k, k + 5, 123 * k
        marker.pose.position.x, marker.pose.orientation.w = 1.5 * k, 0.3
        marker.scale.x, marker.color.r, marker.color.a, marker.lifetime.sec = 0.1, 0.25 * k, 1.0, k
        marker_points = rng.normal(size=(5 * k, 3))
        marker.points = [Point(x=x, y=y, z=z) for x, y, z in marker_points.tolist()]
        marker.colors = [ColorRGBA(r=0.5, g=0.25, b=float(k), a=1.0)] * (k % 3)
        marker.texture.format, marker.texture.data, marker.texture.header.frame_id = "png" * k, bytes(range(3 * k)), "t"
        marker.uv_coordinates = [UVCoordinate(u=0.5, v=0.25)] * k
        marker.mesh_file.filename, marker.mesh_file.data = "f" * k, bytes(range(7 * k))
        markers.append(marker)
        points.append(marker_points)
    expected = MarkerArray(markers=markers)
    ours = serialize_marker_array(markers, points)
    assert ours == serialize_marker_array(markers)  # numpy points and Point objects: the same bytes
    # rclpy leaves alignment padding unwritten (its bytes vary), so compare what a subscriber reads, and the size.
    assert len(ours) == len(serialize_message(expected))
    assert deserialize_message(ours, MarkerArray) == expected


def test_camera_info_distortion_is_honoured_and_rectified_images_use_p(processor, pipeline):
    image, mask = frame()
    distortion = (-0.2, 0.05, 0.0, 0.0, 0.0)
    frame_message = messages(image, mask, 1.0)
    frame_message.camera_info.d = list(distortion)
    outputs = processor.process(frame_message, False)
    expected = pipeline.frames.process(image, mask, CameraModel(K, "plumb_bob", distortion))
    np.testing.assert_array_equal(outputs.result.crop_boxes, expected.crop_boxes)
    undistorted = pipeline.frames.process(image, mask, K)
    assert np.abs(outputs.result.crop_boxes - undistorted.crop_boxes).max() > 1.0
    # REP-155's keypoints are where the joints appear in the distorted image as published.
    camera = CameraModel(K, "plumb_bob", distortion)
    _, skeleton_bytes = outputs.rep155.bodies[int(outputs.result.track_ids[0])]
    neck = outputs.result.joints[0, JOINT_INDEX["neck"]]
    u, v = camera.distort_pixels(*(K @ neck)[:2] / neck[2])
    assert np.hypot(*((K @ neck)[:2] / neck[2] - [u, v])) > 0.5  # the lens moves it
    point = deserialize_message(skeleton_bytes, Skeleton2D).skeleton[1]  # Skeleton2D.NECK
    np.testing.assert_allclose([point.x, point.y], [(u + 0.5) / 320, (v + 0.5) / 240], atol=1e-6)
    # image_rectified: P's left 3x3 applies and D is not used.
    rectified = FrameProcessor(pipeline, options=InputOptions(image_rectified=True))
    p_intrinsics = K * [[1.1], [1.1], [1.0]]
    frame_message.camera_info.p = [float(v) for v in np.hstack([p_intrinsics, np.zeros((3, 1))]).ravel()]
    outputs = rectified.process(frame_message, False)
    expected = pipeline.frames.process(image, mask, p_intrinsics)
    np.testing.assert_array_equal(outputs.result.translation, expected.translation)
    # A D the model does not have is refused with the reason.
    frame_message.camera_info.d = [0.1, 0.2]
    with pytest.raises(FrameRejected, match="5 coefficients") as caught:
        processor.process(frame_message, False)
    assert caught.value.reason == "bad_camera_info"


def test_camera_models_of_broken_camera_infos_say_which_field():
    from sensor_msgs.msg import CameraInfo

    from fasthmr_model.errors import InputError
    from fasthmr_ros.inputs import camera_model

    with pytest.raises(InputError, match="image_rectified: P's left 3x3 is used as K"):
        camera_model(CameraInfo(), rectified=True)  # P all zero
    info = CameraInfo(distortion_model="equidistant", d=[0.1, 0.0, 0.0, 0.0])
    info.k = K.ravel().tolist()
    camera = camera_model(info)
    assert camera.distorted and camera.distortion_model == "equidistant"
    np.testing.assert_array_equal(camera.intrinsics, K)


def test_the_node_bench_runs_end_to_end_and_names_the_runtime(untrained_tiny_bundle, capsys):
    """`python -m fasthmr_ros.bench` on a tiny bundle, two frames a case: every case's row, the runtime line."""
    from fasthmr_ros.bench import MESH_RATES, run

    run(untrained_tiny_bundle.path, frames_per_case=2, repeats=1, joint_frames=True)
    printed = capsys.readouterr().out
    assert "encoder on cpu (CPUExecutionProvider, fp32)" in printed and "per-joint TF frames" in printed
    rows = [line for line in printed.splitlines() if line[:4] in ("1 | ", "3 | ")]
    assert [row.split(" | ")[1] for row in rows] == list(MESH_RATES) * 2
