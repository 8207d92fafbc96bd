"""Starts the FastHMR node with config/fasthmr.yaml, its input topics remapped to the robot's, and RViz (with
the same remappings, so that it shows the remapped camera image).

    ros2 launch fasthmr_ros fasthmr.launch.py image:=/camera/color/image_raw \\
        camera_info:=/camera/color/camera_info mask:=/segmentation/person_instances rviz:=true
    ros2 launch fasthmr_ros fasthmr.launch.py namespace:=cam1 use_sim_time:=true

The node is a LifecycleNode (it configures and activates itself: parameter `autostart`). Its inputs are
relative names resolved in `namespace` (namespace:=cam1 -> /cam1/camera/image_raw), its outputs are
<namespace>/fasthmr/bodies, people and markers. RViz starts in the same namespace with the same remappings,
so its views follow them. Unless the environment holds the user's own DDS settings, every process started
here gets the shipped Fast DDS profile for large images (fasthmr_ros/transport.py): a camera driver started
from this launch too.

Without launch (not installable from PyPI), the same node starts with the same parameters and remappings:

    fasthmr_node --ros-args --params-file config/fasthmr.yaml -r __ns:=/NAMESPACE -r camera/image_raw:=IMAGE \\
        -r camera/camera_info:=CAMERA_INFO -r camera/person_instances:=MASK

(test/test_node_config.py checks that the two agree.)
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from fasthmr_ros.transport import transport_environment

try:  # the lifecycle-aware action, where this distribution's launch_ros has it
    from launch_ros.actions import LifecycleNode as FastHMRNodeAction
except ImportError:
    FastHMRNodeAction = Node

PACKAGE = "fasthmr_ros"
# The node's default input topics (config/fasthmr.yaml), remapped to the launch arguments below.
REMAPPED_TOPICS = {
    "image": "camera/image_raw",
    "camera_info": "camera/camera_info",
    "mask": "camera/person_instances",
}


def generate_launch_description():
    config_folder = PathJoinSubstitution([FindPackageShare(PACKAGE), "config"])
    arguments = [
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node, its inputs and its outputs (e.g. cam1)"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="take time from /clock (a bag played with --clock)"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([config_folder, "fasthmr.yaml"]),
                              description="the node's parameters (defaults: config/fasthmr.yaml)"),
        DeclareLaunchArgument("rviz", default_value="false", description="also start RViz with config/fasthmr.rviz"),
        DeclareLaunchArgument("camera_frame", default_value="camera_optical_frame",
                              description="RViz's fixed frame: the frame_id of the camera images"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value=topic, description=f"topic remapped to {topic}")
                  for name, topic in REMAPPED_TOPICS.items()]
    transport = [SetEnvironmentVariable(name, value) for name, value in transport_environment().items()]
    remappings = [(topic, LaunchConfiguration(name)) for name, topic in REMAPPED_TOPICS.items()]
    use_sim_time = {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}
    fasthmr = FastHMRNodeAction(
        package=PACKAGE,
        executable="fasthmr_node",
        name="fasthmr",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file"), use_sim_time],
        remappings=remappings,
        output="screen",
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        namespace=LaunchConfiguration("namespace"),
        arguments=["-d", PathJoinSubstitution([config_folder, "fasthmr.rviz"]), "-f", LaunchConfiguration("camera_frame")],
        parameters=[use_sim_time],
        remappings=remappings,
        condition=IfCondition(LaunchConfiguration("rviz")),
        output="screen",
    )
    return LaunchDescription(arguments + transport + [fasthmr, rviz])
