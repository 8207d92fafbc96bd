"""The node's configuration files agree with each other and with the code: config/fasthmr.yaml holds every
parameter (and the library defaults), the launch file starts the same executable with the same parameters
file and remaps the same topics as the documented `fasthmr_node` command, in its `namespace`, and RViz follows
the same namespace and remappings (launch itself is not installable here, so its files are read, not run)."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from fasthmr_model.errors import FastHMRError
from fasthmr_ros.parameters import CONFIG_CLASSES, SPECS, build_config, check_value, load_defaults

REPOSITORY = Path(__file__).resolve().parent.parent
LAUNCH_FILE = REPOSITORY / "launch" / "fasthmr.launch.py"
TWO_CAMERAS_LAUNCH_FILE = REPOSITORY / "launch" / "fasthmr_two_cameras.launch.py"
TOPIC_PARAMETERS = {"image": "image_topic", "camera_info": "camera_info_topic", "mask": "mask_topic"}


def test_the_parameters_file_holds_every_parameter_with_its_type():
    defaults = load_defaults(REPOSITORY / "config" / "fasthmr.yaml")
    assert set(defaults) == set(SPECS)
    for name, value in defaults.items():
        assert type(value) is SPECS[name].kind, name
        check_value(name, value)


@pytest.mark.parametrize("namespace", sorted(CONFIG_CLASSES))
def test_library_defaults_equal_the_parameters_file(namespace):
    """A library setting has its default in two places, the dataclass and the YAML: they must agree."""
    defaults = load_defaults()
    assert build_config(namespace, defaults) == CONFIG_CLASSES[namespace]()
    for field in dataclasses.fields(CONFIG_CLASSES[namespace]):
        assert (f"{namespace}.{field.name}" if namespace else field.name) in SPECS


def test_a_parameters_file_with_missing_unknown_or_mistyped_entries_is_refused(tmp_path):
    tree = yaml.safe_load((REPOSITORY / "config" / "fasthmr.yaml").read_text())
    parameters = tree["/**"]["ros__parameters"]
    for change, message in ((lambda: parameters.pop("bundle"), r"missing parameters \['bundle'\]"),
                            (lambda: parameters.update(colour="red"), r"unknown parameters \['colour'\]"),
                            (lambda: parameters["sync"].update(queue_size="five"), "sync.queue_size must be of type int")):
        saved = yaml.safe_load(yaml.safe_dump(parameters))
        change()
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(tree))
        with pytest.raises(FastHMRError, match=message):
            load_defaults(path)
        parameters.clear()
        parameters.update(saved)
    with pytest.raises(FastHMRError, match="does not exist"):
        load_defaults(tmp_path / "nowhere.yaml")


def assignments_of(path: Path) -> dict:
    """Module-level `NAME = value` assignments of a file: name -> expression (ast)."""
    tree = ast.parse(path.read_text())
    return {node.targets[0].id: node.value for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}


def launch_node_calls():
    """The keyword arguments of every node action (launch_ros Node, or the LifecycleNode where the distribution
    has it) in the launch file, and its REMAPPED_TOPICS."""
    assignments = assignments_of(LAUNCH_FILE)
    package = ast.literal_eval(assignments["PACKAGE"])
    remapped = ast.literal_eval(assignments["REMAPPED_TOPICS"])
    calls = [{keyword.arg: keyword.value for keyword in node.keywords} for node in ast.walk(ast.parse(LAUNCH_FILE.read_text()))
             if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("Node", "FastHMRNodeAction")]
    return package, remapped, calls


def test_launch_file_starts_the_console_script_with_the_parameters_file_and_the_topic_remappings():
    package, remapped, calls = launch_node_calls()
    (fasthmr,) = [call for call in calls if ast.unparse(call["package"]) == "PACKAGE"]
    assert package == "fasthmr_ros"
    assert ast.literal_eval(fasthmr["executable"]) == "fasthmr_node"
    assert ast.literal_eval(fasthmr["name"]) == "fasthmr"
    assert ast.unparse(fasthmr["parameters"]) == "[LaunchConfiguration('params_file'), use_sim_time]"
    source = LAUNCH_FILE.read_text()
    assert re.search(r'"params_file", default_value=PathJoinSubstitution\(\[config_folder, "fasthmr.yaml"\]\)', source)
    assert 'PathJoinSubstitution([FindPackageShare(PACKAGE), "config"])' in source
    # Every remapped topic is the node's default for that input (relative: resolved in the namespace), and
    # every input is remappable.
    defaults = load_defaults()
    assert {name: defaults[parameter] for name, parameter in TOPIC_PARAMETERS.items()} == remapped
    assert not any(topic.startswith("/") for topic in remapped.values())
    assert "remappings = [(topic, LaunchConfiguration(name)) for name, topic in REMAPPED_TOPICS.items()]" in source
    assert ast.unparse(fasthmr["remappings"]) == "remappings"


def test_launch_file_has_namespace_and_sim_time_arguments_and_a_lifecycle_node_where_launch_ros_has_one():
    source = LAUNCH_FILE.read_text()
    _, _, calls = launch_node_calls()
    assert re.search(r'DeclareLaunchArgument\("namespace", default_value=""', source)
    assert re.search(r'DeclareLaunchArgument\("use_sim_time", default_value="false"', source)
    assert ('use_sim_time = {"use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)}'
            in source)
    for call in calls:  # the node and RViz: the same namespace, remappings and clock
        assert ast.unparse(call["namespace"]) == "LaunchConfiguration('namespace')"
        assert ast.unparse(call["remappings"]) == "remappings"
        assert "use_sim_time" in ast.unparse(call["parameters"])
    assert ("try:  # the lifecycle-aware action, where this distribution's launch_ros has it\n"
            "    from launch_ros.actions import LifecycleNode as FastHMRNodeAction\n"
            "except ImportError:\n    FastHMRNodeAction = Node\n") in source


def test_launch_file_gives_its_processes_the_shipped_transport_unless_the_environment_has_its_own():
    source = LAUNCH_FILE.read_text()
    assert "from fasthmr_ros.transport import transport_environment" in source
    assert ("transport = [SetEnvironmentVariable(name, value) for name, value in transport_environment().items()]"
            in source)
    # Set before any process starts.
    assert "return LaunchDescription(arguments + transport + [fasthmr, rviz])" in source


def test_the_two_camera_launch_file_includes_the_single_one_in_two_namespaces():
    assignments = assignments_of(TWO_CAMERAS_LAUNCH_FILE)
    cameras = ast.literal_eval(assignments["CAMERAS"])
    assert len(cameras) == 2 and len(set(cameras.values())) == 2
    source = TWO_CAMERAS_LAUNCH_FILE.read_text()
    assert 'single = PathJoinSubstitution([FindPackageShare(PACKAGE), "launch", "fasthmr.launch.py"])' in source
    assert 'launch_arguments=[("namespace", LaunchConfiguration(name))]' in source
    assert "for name in CAMERAS]" in source
    # Every argument passed on exists in the single-camera launch file.
    single = LAUNCH_FILE.read_text()
    for shared in ast.literal_eval(assignments["SHARED_ARGUMENTS"]):
        assert f'DeclareLaunchArgument("{shared}"' in single


def test_the_documented_command_is_what_the_launch_file_does():
    """The README's `fasthmr_node` command: the console script of setup.py, the same parameters file and the
    same remappings as the launch file."""
    _, remapped, _ = launch_node_calls()
    setup = (REPOSITORY / "setup.py").read_text()
    assert '"fasthmr_node = fasthmr_ros.node:main"' in setup
    assert '("share/" + PACKAGE_NAME + "/launch", files_in("launch/*.launch.py"))' in setup
    assert '("share/" + PACKAGE_NAME + "/config", files_in("config/*"))' in setup
    readme = (REPOSITORY / "README.md").read_text()
    commands = re.findall(r"^fasthmr_node --ros-args --params-file config/fasthmr\.yaml -r camera.*$", readme,
                          re.MULTILINE)
    assert commands, "README shows no `fasthmr_node --ros-args --params-file config/fasthmr.yaml -r camera/...` command"
    remapping = re.findall(r"-r (\S+):=(\S+)", " ".join(commands))
    assert {source for source, _ in remapping} == set(remapped.values())
    assert "ros2 launch fasthmr_ros fasthmr.launch.py" in readme


def test_the_rviz_config_shows_the_node_outputs_and_its_image_by_names_the_launch_remaps_and_namespaces():
    """Relative names: RViz starts in the node's namespace with the node's remappings (checked above)."""
    rviz = yaml.safe_load((REPOSITORY / "config" / "fasthmr.rviz").read_text())
    topics = {display["Class"]: display["Topic"]["Value"] for display in rviz["Visualization Manager"]["Displays"]
              if "Topic" in display}
    _, remapped, _ = launch_node_calls()
    assert topics["rviz_default_plugins/MarkerArray"] == "fasthmr/markers"
    assert topics["rviz_default_plugins/PoseArray"] == "fasthmr/people"
    assert topics["rviz_default_plugins/Image"] == remapped["image"]
    (tf,) = [display for display in rviz["Visualization Manager"]["Displays"]
             if display["Class"] == "rviz_default_plugins/TF"]
    assert tf["Enabled"] and tf["Show Names"] and tf["Show Axes"]  # the body frames, named body_<id>


def test_the_readme_documents_every_parameter():
    readme = (REPOSITORY / "README.md").read_text()
    assert [name for name in SPECS if f"| `{name}` |" not in readme] == []


def test_the_diagnostics_analyzer_groups_the_node_status():
    """config/fasthmr_diagnostics.yaml: a diagnostic_aggregator GenericAnalyzer whose prefix matches the status
    the node publishes, with a timeout longer than the node's report period."""
    from fasthmr_ros.node import NODE_NAME

    analyzers = yaml.safe_load((REPOSITORY / "config" / "fasthmr_diagnostics.yaml").read_text())
    (analyzer,) = [value for value in analyzers["analyzers"]["ros__parameters"].values() if isinstance(value, dict)]
    assert analyzer["type"] == "diagnostic_aggregator/GenericAnalyzer"
    for status_name in (f"{NODE_NAME}: pipeline", f"cam1/{NODE_NAME}: pipeline"):  # namespaced nodes too
        assert any(part in status_name for part in analyzer["contains"])
    assert analyzer["timeout"] > load_defaults()["diagnostics_period"]
