"""Starts the FastHMR node with config/fasthmr.yaml, its input topics remapped to the robot's, and RViz (with
the same remappings, so that it shows the remapped camera image).

    ros2 launch fasthmr_ros fasthmr.launch.py image:=/camera/color/image_raw \\
        camera_info:=/camera/color/camera_info mask:=/segmentation/person_instances rviz:=true

Without launch (not installable from PyPI), the same node starts with the same parameters and remappings:

    fasthmr_node --ros-args --params-file config/fasthmr.yaml -r /camera/image_raw:=IMAGE \\
        -r /camera/camera_info:=CAMERA_INFO -r /camera/person_instances:=MASK

(test/test_node_config.py checks that the two agree.)
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "fasthmr_ros"
# The node's default input topics (config/fasthmr.yaml), remapped to the launch arguments below.
REMAPPED_TOPICS = {
    "image": "/camera/image_raw",
    "camera_info": "/camera/camera_info",
    "mask": "/camera/person_instances",
}


def generate_launch_description():
    config_folder = PathJoinSubstitution([FindPackageShare(PACKAGE), "config"])
    arguments = [
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([config_folder, "fasthmr.yaml"]),
                              description="the node's parameters (defaults: config/fasthmr.yaml)"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz with config/fasthmr.rviz"),
        DeclareLaunchArgument("camera_frame", default_value="camera_optical_frame",
                              description="RViz's fixed frame: the frame_id of the camera images"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value=topic, description=f"topic remapped to {topic}")
                  for name, topic in REMAPPED_TOPICS.items()]
    remappings = [(topic, LaunchConfiguration(name)) for name, topic in REMAPPED_TOPICS.items()]
    fasthmr = Node(
        package=PACKAGE,
        executable="fasthmr_node",
        name="fasthmr",
        parameters=[LaunchConfiguration("params_file")],
        remappings=remappings,
        output="screen",
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        arguments=["-d", PathJoinSubstitution([config_folder, "fasthmr.rviz"]), "-f", LaunchConfiguration("camera_frame")],
        remappings=remappings,
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return LaunchDescription(arguments + [fasthmr, rviz])
