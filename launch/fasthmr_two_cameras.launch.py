"""Two FastHMR nodes, one per camera, each in its own namespace (fasthmr.launch.py twice).

    ros2 launch fasthmr_ros fasthmr_two_cameras.launch.py camera1:=front camera2:=rear

Node `<camera1>/fasthmr` reads <camera1>/camera/image_raw, <camera1>/camera/camera_info and
<camera1>/camera/person_instances and publishes <camera1>/fasthmr/bodies, people and markers; the same for
camera2. For other input names, include fasthmr.launch.py once per camera with namespace:= and image:= etc.

Without launch, the same two nodes:

    fasthmr_node --ros-args --params-file config/fasthmr.yaml -r __ns:=/front &
    fasthmr_node --ros-args --params-file config/fasthmr.yaml -r __ns:=/rear

(test/test_namespaces.py runs these two commands with two cameras.)
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = "fasthmr_ros"
CAMERAS = {"camera1": "camera1", "camera2": "camera2"}  # launch argument -> default namespace
# Passed on to each included fasthmr.launch.py.
SHARED_ARGUMENTS = ("use_sim_time", "params_file")


def generate_launch_description():
    single = PathJoinSubstitution([FindPackageShare(PACKAGE), "launch", "fasthmr.launch.py"])
    arguments = [DeclareLaunchArgument(name, default_value=namespace, description=f"namespace of the {name} node")
                 for name, namespace in CAMERAS.items()]
    arguments += [
        DeclareLaunchArgument("use_sim_time", default_value="false", description="take time from /clock"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "fasthmr.yaml"]),
                              description="the parameters of both nodes"),
    ]
    # Each include in a group of its own: the launch arguments it sets stay inside it.
    nodes = [GroupAction([IncludeLaunchDescription(
        PythonLaunchDescriptionSource(single),
        launch_arguments=[("namespace", LaunchConfiguration(name))]
        + [(shared, LaunchConfiguration(shared)) for shared in SHARED_ARGUMENTS])]) for name in CAMERAS]
    return LaunchDescription(arguments + nodes)
