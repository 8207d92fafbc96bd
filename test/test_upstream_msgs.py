"""tf2_msgs, people_msgs and hri_msgs as built into the venv (upstream_msgs/, scripts/build_msgs.sh): the type
hash each message announces on the ROS graph equals the hash of upstream's own definition, so that a real
install's tf2, RViz, nav2 and the ROS4HRI tools accept what the node publishes.

The recorded hashes were computed from upstream's files, read from the upstream repositories at the commits
named in upstream_msgs/README.md (ros2/geometry2 1b005c6, wg-perception/people 0ae47f6, ros4hri/hri_msgs
4e7c176), by rosidl's own steps: `rosidl_adapter.msg.convert_msg_to_idl` on each .msg file, then
`rosidl_generator_type_description.generate_type_hash` over the package's .idl files, with std_msgs,
geometry_msgs and builtin_interfaces from the venv's wheels as the included packages. RIHS01 hashes depend on
the field names and types (nested types included), not on comments, constants or default values.
"""

from __future__ import annotations

import importlib
import uuid

import pytest

UPSTREAM_HASHES = {
    "tf2_msgs/msg/TFMessage": "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087",
    "people_msgs/msg/People": "RIHS01_9ea98a5e58f833a9532957bca23a6b8006a12885d5a16c8ca41dd901d10c33b6",
    "people_msgs/msg/Person": "RIHS01_434c04a421c02370b4e2322c2a4201bebb3e32545e0145199743678ab9ce0fa0",
    "hri_msgs/msg/IdsList": "RIHS01_7e0812d1ac945c98fd3e393568d581ad0ab567f37b24eff633eab778c1bfe62d",
    "hri_msgs/msg/NormalizedPointOfInterest2D":
        "RIHS01_cc1d2f720c82afeb850ff1dbf66f41ecb7caf19f842987f1247e66160cf03953",
    "hri_msgs/msg/NormalizedRegionOfInterest2D":
        "RIHS01_2e50c93f1ca166ee77af9a5424dc951ae4e452b740162a7f83c082d917dcaff5",
    "hri_msgs/msg/Skeleton2D": "RIHS01_1cb61f012db6ca43c48fa0097ccab9a00108ea39323c13f01bb983323c1e3420",
}


@pytest.fixture
def graph_node(ros_env):
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"upstream_msgs_{uuid.uuid4().hex[:8]}", context=context)
    yield node
    node.destroy_node()
    context.try_shutdown()


@pytest.mark.parametrize("type_name", sorted(UPSTREAM_HASHES))
def test_a_publisher_announces_the_upstream_type_hash(graph_node, type_name):
    package, _, message = type_name.split("/")
    message_class = getattr(importlib.import_module(f"{package}.msg"), message)
    topic = f"/upstream_hash_{message.lower()}_{uuid.uuid4().hex[:8]}"
    graph_node.create_publisher(message_class, topic, 1)
    (info,) = graph_node.get_publishers_info_by_topic(topic)
    assert info.topic_type == type_name
    assert str(info.topic_type_hash) == UPSTREAM_HASHES[type_name]


def test_the_skeleton_has_the_18_keypoints_rep155_names():
    from hri_msgs.msg import Skeleton2D

    assert (Skeleton2D.NOSE, Skeleton2D.NECK, Skeleton2D.RIGHT_ANKLE, Skeleton2D.RIGHT_EAR) == (0, 1, 10, 17)
    assert len(Skeleton2D().skeleton) == 18
