"""`fasthmr replay`: bags of both storages and from another writer, outputs equal to the library's, accuracy
against ground truth, and bags broken on purpose (truncated, missing topics, wrong types, time going back)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fasthmr_model.data.motion import synthetic_body_model
from fasthmr_model.errors import InputError
from fasthmr_model.stream import POSE_PER_FRAME, POSE_TEMPORAL, StreamPipeline
from fasthmr_ros.bags import BagTopics, read_topic
from fasthmr_ros.cli import main
from fasthmr_ros.recordings import RecordedFrame, synthetic_clip_frames, write_recording
from fasthmr_ros.replay import OUTPUT_TOPICS, default_topics, replay_bag

FRAMES = 10  # more than the default decoder's window (8): the last frames' poses are temporal


@pytest.fixture(scope="module")
def clip():
    return list(synthetic_clip_frames(7, 2, FRAMES, synthetic_body_model()))


@pytest.fixture(scope="module")
def bag(tmp_path_factory, clip):
    path = tmp_path_factory.mktemp("bags") / "clip"
    write_recording(path, clip, synthetic_body_model(), default_topics())
    return path


def test_replay_outputs_equal_the_library_stream_and_score_the_truth(bag, clip, tmp_path):
    report = replay_bag(bag, out=tmp_path / "outputs", progress=False)
    assert (report.frames, report.persons, report.dropped, report.error) == (FRAMES, 2 * FRAMES, 0, None)
    assert report.ground_truth == {"persons": 2 * FRAMES, "missed": 0}
    assert 0 < report.metrics["mpjpe"] < 200 and report.metrics["accel"] is not None
    assert report.latency_ms["p50"] > 0
    outputs = list(read_topic(tmp_path / "outputs", OUTPUT_TOPICS["bodies"][0]))
    assert [time_ns for time_ns, _ in outputs] == [frame.stamp_ns for frame in clip]
    stream = StreamPipeline()
    sources = []
    for (time_ns, message), frame in zip(outputs, clip):
        assert message.header.stamp.sec * 10**9 + message.header.stamp.nanosec == frame.stamp_ns
        expected = stream.process(frame.image, frame.mask, frame.intrinsics, frame.stamp_ns / 1e9)
        joints = np.array([body.joints for body in message.bodies]).reshape(-1, 24, 3)
        np.testing.assert_allclose(joints, expected.joints, atol=1e-5)
        assert [body.track_id for body in message.bodies] == expected.track_ids.tolist()
        assert [body.pose_source for body in message.bodies] == expected.pose_source.tolist()
        sources += expected.pose_source.tolist()
    assert POSE_TEMPORAL in sources and POSE_PER_FRAME in sources
    assert len(list(read_topic(tmp_path / "outputs", OUTPUT_TOPICS["markers"][0]))) == FRAMES


def test_sqlite3_bags_replay_the_same(clip, bag, tmp_path):
    write_recording(tmp_path / "clip_db3", clip, synthetic_body_model(), default_topics(), storage="sqlite3")
    assert list((tmp_path / "clip_db3").glob("*.db3"))
    first, second = (replay_bag(path, progress=False) for path in (bag, tmp_path / "clip_db3"))
    assert first.metrics == second.metrics and first.persons == second.persons


def _image_dict(array: np.ndarray, encoding: str, stamp_ns: int) -> dict:
    height, width = array.shape[:2]
    return {"header": {"stamp": {"sec": stamp_ns // 10**9, "nanosec": stamp_ns % 10**9}, "frame_id": "cam"},
            "height": height, "width": width, "encoding": encoding, "is_bigendian": 0,
            "step": array.nbytes // height, "data": array.tobytes()}


def test_a_bag_written_by_another_tool(clip, tmp_path, capsys):
    """A bare .mcap written by the mcap project's ROS 2 writer (no rosbags, no rclpy), bgr8 images and mono16
    masks, no ground truth: replay reads it and reports latency."""
    from mcap_ros2.writer import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    topics = default_topics()
    path = tmp_path / "other.mcap"
    with open(path, "wb") as stream:
        writer = Writer(stream)
        schemas = {name: writer.register_msgdef(name, store.generate_msgdef(name, ros_version=2)[0])
                   for name in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo")}
        for frame in clip:
            stamp = {"sec": frame.stamp_ns // 10**9, "nanosec": frame.stamp_ns % 10**9}
            info = {"header": {"stamp": stamp, "frame_id": "cam"}, "height": 480, "width": 640,
                    "distortion_model": "plumb_bob", "d": [0.0] * 5, "k": frame.intrinsics.reshape(-1).tolist(),
                    "r": np.eye(3).reshape(-1).tolist(), "p": np.hstack([frame.intrinsics, np.zeros((3, 1))]).reshape(-1).tolist(),
                    "binning_x": 0, "binning_y": 0,
                    "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False}}
            for topic, schema, message in (
                    (topics.camera_info, "sensor_msgs/msg/CameraInfo", info),
                    (topics.image, "sensor_msgs/msg/Image", _image_dict(frame.image[..., ::-1].copy(), "bgr8", frame.stamp_ns)),
                    (topics.mask, "sensor_msgs/msg/Image", _image_dict(frame.mask.astype("<u2"), "mono16", frame.stamp_ns))):
                writer.write_message(topic=topic, schema=schemas[schema], message=message,
                                     log_time=frame.stamp_ns, publish_time=frame.stamp_ns)
        writer.finish()
    assert main(["replay", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == FRAMES and report["persons"] == 2 * FRAMES and report["metrics"] is None
    assert set(report["latency_ms"]) == {"p50", "p95", "max"} and report["latency_ms"]["p50"] > 0
    assert report["dropped"] == 0 and report["drops"] == {}
    assert main(["replay", str(path)]) == 0
    assert "latency per frame: p50" in capsys.readouterr().out


def test_a_truncated_bag_gives_partial_results(bag, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(bag, broken)
    data = next(broken.glob("*.mcap"))
    content = data.read_bytes()
    data.write_bytes(content[: len(content) // 2])
    report = replay_bag(broken, progress=False)
    assert 1 <= report.frames < FRAMES
    assert "record by record" in report.error
    assert "truncated" in report.error


def test_missing_and_mistyped_topics_are_named(bag):
    topics = default_topics()
    with pytest.raises(InputError, match="has no camera_info topic /nowhere.*--camera-info-topic"):
        replay_bag(bag, topics=topics._replace(camera_info="/nowhere"), progress=False)
    with pytest.raises(InputError, match="holds sensor_msgs/msg/Image; replay reads sensor_msgs/msg/CameraInfo"):
        replay_bag(bag, topics=topics._replace(camera_info=topics.image), progress=False)
    with pytest.raises(InputError, match="does not exist"):
        replay_bag(bag.parent / "absent", progress=False)
    # Without masks every frame runs mask-less; without ground truth there are no metrics.
    report = replay_bag(bag, topics=BagTopics(topics.image, topics.camera_info, "/no_masks", "/no_truth"),
                        progress=False)
    assert report.frames == FRAMES and not report.has_masks and report.metrics is None


def test_bad_frames_and_time_going_back_are_counted(clip, tmp_path):
    """Stamps jump back halfway; an image comes with a mask of another size: counted, and replay goes on."""
    frames = clip[:3] + [frame._replace(stamp_ns=frame.stamp_ns - 5 * 10**7, received_ns=frame.stamp_ns)
                         for frame in clip[3:]]
    path = tmp_path / "jumps"
    write_recording(path, frames, synthetic_body_model(), default_topics())
    report = replay_bag(path, progress=False)
    assert report.time_jumped_back == 1 and report.frames == FRAMES
    tiny = RecordedFrame(clip[-1].stamp_ns + 10**8, np.zeros((4, 4, 3), np.uint8), np.zeros((5, 5), np.uint8),
                         clip[0].intrinsics, ())
    write_recording(tmp_path / "sizes", clip[:2] + [tiny], synthetic_body_model(), default_topics())
    report = replay_bag(tmp_path / "sizes", progress=False)
    assert report.frames == 2 and report.drops == {"mask_size_mismatch": 1}


def test_realtime_replay_through_the_real_node(bag, clip, tmp_path, ros_env):
    """The bag at its recorded rate to `python -m fasthmr_ros.node` over loopback DDS. A busy node drops
    frames (newer ones replace older ones): each drop is accounted for by the node's own counters, and the
    frames it answers equal the library's stream fed with exactly those frames (a dropped frame never
    reaches the tracker or the decoder's windows)."""
    from fasthmr_ros.realtime import replay_realtime

    report = replay_realtime(bag, out=tmp_path / "outputs", progress=False)
    assert report.node_exit_code == 0 and report.images == FRAMES
    assert report.dropped == FRAMES - report.frames == sum(report.drops.values())
    assert report.frames >= 1 and report.latency_ms["p50"] > 0
    answered = dict(read_topic(tmp_path / "outputs", OUTPUT_TOPICS["bodies"][0]))
    assert len(answered) == report.frames
    stream = StreamPipeline()
    for frame in clip:
        if frame.stamp_ns in answered:
            expected = stream.process(frame.image, frame.mask, frame.intrinsics, frame.stamp_ns / 1e9)
            np.testing.assert_allclose([body.joints for body in answered[frame.stamp_ns].bodies],
                                       expected.joints.reshape(-1, 72), atol=1e-5)


def test_convert_3dpw_then_replay(tmp_path, capsys):
    """A 3DPW sequence in the dataset's layout (annotations + JPEG images) -> bag with masks rendered from the
    ground-truth meshes -> replay scores it."""
    from PIL import Image as PilImage

    from fasthmr_model.body.synthetic import write_synthetic_body
    from test_datasets import FRAMES as SEQUENCE_FRAMES, write_3dpw

    body_path = write_synthetic_body(tmp_path / "body.npz")
    body = synthetic_body_model()
    write_3dpw(tmp_path / "seq.pkl", body, np.ones(SEQUENCE_FRAMES, bool))
    images = tmp_path / "imageFiles" / "courtyard_synthetic_00"
    images.mkdir(parents=True)
    for index in range(SEQUENCE_FRAMES):  # 3DPW's portrait 1080x1920 frames (flat grey: the masks matter here)
        PilImage.fromarray(np.full((1920, 1080, 3), 90, np.uint8)).save(images / f"image_{index:05d}.jpg")
    assert main(["convert", "3dpw", str(tmp_path / "seq.pkl"), "--images", str(images), "--out",
                 str(tmp_path / "bag"), "--body-model", str(body_path)]) == 0
    assert f"wrote {SEQUENCE_FRAMES} frames of courtyard_synthetic_00" in capsys.readouterr().out
    report = replay_bag(tmp_path / "bag", progress=False)
    assert report.frames == SEQUENCE_FRAMES and report.has_masks
    assert report.ground_truth["persons"] == 2 * SEQUENCE_FRAMES and report.metrics is not None
    assert main(["convert", "3dpw", str(tmp_path / "seq.pkl"), "--out", str(tmp_path / "bag2"),
                 "--body-model", str(body_path)]) == 2
    assert "--images" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"\x89MCAP0\r\n", bytes(range(256)) * 4], ids=["empty", "magic only", "garbage"])
def test_an_empty_or_corrupt_mcap_says_what_is_wrong(tmp_path, content, capsys):
    path = tmp_path / "broken.mcap"
    path.write_bytes(content)
    with pytest.raises(InputError, match="empty, cut short before its first message, or not a rosbag2 bag"):
        replay_bag(path, progress=False)
    assert main(["replay", str(path)]) == 2
    assert "no image topic" not in capsys.readouterr().err


def test_a_bag_whose_images_cannot_be_decoded_fails_the_command(tmp_path, capsys):
    from fasthmr_ros.bags import CAMERA_INFO_TYPE, IMAGE_TYPE, BagWriter
    from fasthmr_ros.recordings import camera_info_message, header_at

    topics = default_topics()
    with BagWriter(tmp_path / "undecodable") as writer:
        for index in range(3):
            stamp_ns = (index + 1) * 10**8
            writer.write(topics.camera_info, CAMERA_INFO_TYPE, stamp_ns,
                         camera_info_message(header_at(stamp_ns), np.diag([500.0, 500.0, 1.0]), 64, 48))
            writer.write(topics.image, IMAGE_TYPE, stamp_ns, b"\x00\x01\x00\x00garbage")
    assert main(["replay", str(tmp_path / "undecodable")]) == 2
    error = capsys.readouterr().err
    assert "nothing in" in error and "3 messages could not be decoded" in error


def test_offline_decoding_reports_beside_the_causal_stream(bag, capsys):
    """--offline decodes each recorded track with windows centred on each frame: every person-frame of a track
    with a full window, scored against the same truth, while the causal result stays what the node gives."""
    causal = replay_bag(bag, progress=False)
    report = replay_bag(bag, progress=False, offline=True)
    assert report.metrics == causal.metrics and report.persons == causal.persons
    assert (report.offline["tracks"], report.offline["frames"]) == (2, 2 * FRAMES)
    offline = report.offline["metrics"]
    assert set(offline) == {"mpjpe", "pa_mpjpe", "pve", "accel"} and 0 < offline["mpjpe"] < 200
    assert offline != report.metrics  # every frame decoded (causal: only those after a full window)
    assert main(["replay", str(bag), "--offline", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["offline"]["metrics"] == offline
    assert main(["replay", str(bag), "--offline"]) == 0
    text = capsys.readouterr().out
    assert "causal (the stream)" in text and "offline (windows centred on each frame; 2 tracks" in text
    assert main(["replay", str(bag), "--offline", "--realtime"]) == 2
    assert "without --realtime" in capsys.readouterr().err


def test_offline_decoding_of_interleaved_tracks_is_per_track():
    """Two tracks' person-frames interleaved in stream order decode as each track alone would; a track shorter
    than the window keeps the encoder's rotations."""
    from fasthmr_model.body.rotations import axis_angle_to_matrix
    from fasthmr_model.bundle import load_bundle
    from fasthmr_model.decoder.pose import body_rest_points
    from fasthmr_model.decoder.runtime import (
        DecoderSession, decode_offline, decode_tracks_offline, frame_inputs, poses_to_rotmats,
    )
    from fasthmr_model.runtime import RuntimeConfig

    bundle = load_bundle(None)
    session = DecoderSession(bundle, RuntimeConfig(provider="cpu"))
    body = synthetic_body_model()
    rng = np.random.default_rng(3)
    track_ids = np.array([1, 2] * 12 + [3] * 3)
    count = len(track_ids)
    features = rng.standard_normal((count, session.config.feature_size)).astype(np.float32)
    rays = 0.3 * rng.standard_normal((count, 3)) * [1.0, 1.0, 0.0]
    rotmats = axis_angle_to_matrix(0.2 * rng.standard_normal((count, 24, 3)))
    betas = 0.5 * rng.standard_normal((count, 10))
    decoded = decode_tracks_offline(session, body, track_ids, features, rays, rotmats, betas)
    for track in (1, 2):
        rows = np.flatnonzero(track_ids == track)
        rest = body_rest_points(body, betas[rows])
        alone = poses_to_rotmats(rest, decode_offline(session, frame_inputs(rest, features[rows], rays[rows],
                                                                           rotmats[rows])))
        np.testing.assert_allclose(decoded[rows], alone, atol=1e-9)
        assert not np.allclose(decoded[rows], rotmats[rows], atol=1e-3)
    np.testing.assert_array_equal(decoded[track_ids == 3], rotmats[track_ids == 3])
    with pytest.raises(InputError, match="person-frames"):
        decode_tracks_offline(session, body, track_ids[:-1], features, rays, rotmats, betas)
