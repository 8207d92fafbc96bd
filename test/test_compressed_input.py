"""Compressed input: a bag of CompressedImage JPEG images and PNG masks replays with the bodies of its raw twin
(within JPEG's effect), its topics are found by image_transport's naming or named, bad compressed frames are
counted and skipped, and the node takes the same messages live over loopback DDS."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fasthmr_model.data.motion import synthetic_body_model
from fasthmr_model.errors import InputError
from fasthmr_ros.bags import CAMERA_INFO_TYPE, COMPRESSED_IMAGE_TYPE, BagReader, BagWriter, read_topic
from fasthmr_ros.cli import main
from fasthmr_ros.image_conversion import array_to_compressed
from fasthmr_ros.recordings import camera_info_message, header_at, synthetic_clip_frames, write_recording
from fasthmr_ros.replay import OUTPUT_TOPICS, default_topics, replay_bag

FRAMES = 10


@pytest.fixture(scope="module")
def clip():
    return list(synthetic_clip_frames(7, 2, FRAMES, synthetic_body_model()))


@pytest.fixture(scope="module")
def twins(tmp_path_factory, clip):
    """(raw bag, compressed bag) of the same frames: rgb8 + mono8, and JPEG (quality 95) + PNG."""
    folder = tmp_path_factory.mktemp("twins")
    write_recording(folder / "raw", clip, synthetic_body_model(), default_topics())
    write_recording(folder / "compressed", clip, synthetic_body_model(), default_topics(), image_codec="jpeg",
                    mask_codec="png")
    return folder / "raw", folder / "compressed"


def bodies_by_stamp(path):
    return {time_ns: message.bodies for time_ns, message in read_topic(path, OUTPUT_TOPICS["bodies"][0])}


def test_a_compressed_bag_replays_the_bodies_of_its_raw_twin(twins, tmp_path):
    raw, compressed = twins
    with BagReader(compressed, default_topics()) as reader:  # found as <topic>/compressed
        assert reader.transports == {"image": "compressed", "mask": "compressed"}
        assert reader.topics.image == default_topics().image + "/compressed"
    reports = [replay_bag(bag, out=tmp_path / bag.name, progress=False) for bag in twins]
    assert [(report.frames, report.persons, report.dropped) for report in reports] == [(FRAMES, 2 * FRAMES, 0)] * 2
    first, second = (bodies_by_stamp(tmp_path / bag.name) for bag in twins)
    assert first.keys() == second.keys()
    differences = []
    for stamp, bodies in first.items():
        # The PNG masks are lossless: the same persons, boxes and tracks; JPEG moves the joints a little.
        assert [body.track_id for body in bodies] == [body.track_id for body in second[stamp]]
        assert [body.box for body in bodies] == [body.box for body in second[stamp]]
        joints = [np.reshape([body.joints for body in group], (-1, 24, 3)) for group in (bodies, second[stamp])]
        differences.append(np.linalg.norm(joints[0] - joints[1], axis=-1).mean(axis=-1))
    # Measured (seed 7, JPEG quality 95): joints 7 mm apart on average (camera-frame positions, translation
    # included), MPJPE against the truth equal to 0.1 mm.
    assert 0.0 < np.concatenate(differences).mean() * 1000 < 15.0
    assert abs(reports[0].metrics["mpjpe"] - reports[1].metrics["mpjpe"]) < 2.0


def test_compressed_topics_are_named_by_options_and_mistyped_ones_refused(twins, capsys):
    _, compressed = twins
    topics = default_topics()
    assert main(["replay", str(compressed), "--json", "--image-topic", topics.image + "/compressed",
                 "--mask-topic", topics.mask + "/compressed"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["frames"], report["persons"], report["has_masks"]) == (FRAMES, 2 * FRAMES, True)
    with pytest.raises(InputError, match="holds sensor_msgs/msg/CompressedImage; replay reads sensor_msgs/msg/CameraInfo"):
        BagReader(compressed, topics._replace(camera_info=topics.image + "/compressed"))


def test_bad_compressed_frames_are_counted_and_skipped(clip, tmp_path):
    """Frame 1's JPEG is cut short, frame 2's mask is a JPEG (lossy), frame 3's PNG declares a huge size:
    each is counted under its reason and the others are answered."""
    topics = default_topics()
    with BagWriter(tmp_path / "bad") as writer:
        for index, frame in enumerate(clip[:5]):
            header = header_at(frame.stamp_ns)
            height, width = frame.image.shape[:2]
            image = array_to_compressed(frame.image, "jpeg")
            mask = array_to_compressed(frame.mask, "jpeg" if index == 2 else "png")
            if index == 1:
                image.data = image.data[: len(image.data) // 3]
            if index == 3:  # the IHDR's width field says 100000 px
                data = bytearray(mask.data)
                data[16:20] = (100000).to_bytes(4, "big")
                mask.data = bytes(data)
            image.header = mask.header = header
            writer.write(topics.camera_info, CAMERA_INFO_TYPE, frame.stamp_ns,
                         camera_info_message(header, frame.intrinsics, width, height))
            writer.write(topics.image + "/compressed", COMPRESSED_IMAGE_TYPE, frame.stamp_ns, image)
            writer.write(topics.mask + "/compressed", COMPRESSED_IMAGE_TYPE, frame.stamp_ns, mask)
    report = replay_bag(tmp_path / "bad", progress=False)
    assert report.frames == 2 and report.drops == {"bad_image": 1, "bad_mask": 2}


def test_the_node_takes_compressed_images_and_masks_live(ros_env, tmp_path, twins):
    """The compressed twin's messages published as image_transport would, to a node with image_transport and
    mask_transport compressed: it answers each frame with the bodies the in-process replay gives."""
    from test_node import started_node

    from fasthmr_ros.stamps import stamp_nanoseconds

    _, compressed = twins
    replay_bag(compressed, out=tmp_path / "replayed", progress=False)
    replayed = bodies_by_stamp(tmp_path / "replayed")
    with BagReader(compressed, default_topics()) as reader:
        messages = list(reader.messages())
    infos = [item.message for item in messages if item.role == "camera_info"]
    first = infos[0]
    priming = (np.zeros((first.height, first.width, 3), np.uint8), None, np.reshape(first.k, (3, 3)))
    with started_node(ros_env, tmp_path, priming, "qos.reliability:=reliable", "image_transport:=compressed",
                      "mask_transport:=compressed", transport="compressed") as (process, _, client):
        publishers = {"image": client.image, "mask": client.mask, "camera_info": client.camera_info}
        for item in messages:
            if item.role in publishers:
                publishers[item.role].publish(item.message)
            if item.role == "mask":  # the frame is complete: wait for its answer before the next one
                stamp = item.message.header.stamp
                answer = client.wait_for("bodies", lambda message: message.header.stamp == stamp, process=process)
                expected = replayed[stamp_nanoseconds(answer.header)]
                assert [body.track_id for body in answer.bodies] == [body.track_id for body in expected]
                np.testing.assert_allclose([body.joints for body in answer.bodies],
                                           [body.joints for body in expected], atol=1e-5)


def test_realtime_replay_sends_compressed_topics_as_compressed(ros_env, twins, tmp_path):
    from fasthmr_ros.realtime import replay_realtime

    _, compressed = twins
    report = replay_realtime(compressed, out=tmp_path / "outputs", progress=False)
    assert report.node_exit_code == 0 and report.images == FRAMES and report.frames >= 1
    assert report.dropped == FRAMES - report.frames and "bad_image" not in report.drops
