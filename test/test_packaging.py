"""The ROS 2 packaging: package.xml declares every run-time import with a rosdep key, and the README's colcon
command builds both packages (fasthmr_ros at the root, fasthmr_msgs in msg/) in a fresh workspace, after which
the messages and the node import from that workspace. The venv stands in for a sourced ROS 2 install."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from catkin_pkg.package import parse_package

REPOSITORY = Path(__file__).resolve().parent.parent
OWN_PACKAGES = {"fasthmr_model", "fasthmr_ros", "fasthmr_msgs"}
# Python module -> the rosdep key that installs it, where the two differ.
ROSDEP_KEYS = {
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "onnxruntime": "python3-onnxruntime-pip",
    "rosbags": "python3-rosbags-pip",
    "mcap": "mcap-ros2-support",
    "tqdm": "python3-tqdm",
    "PIL": "python3-pil",
    "matplotlib": "python3-matplotlib",
    "mpl_toolkits": "python3-matplotlib",
}
# Run-time imports rosdep has no key for: package.xml names them in a comment (pip), requirements-base.txt pins them.
WITHOUT_ROSDEP_KEY = {"simplejpeg"}
# Imported only to train, convert and export: setup.py's "train" extra (rosdep has no keys for most of them).
TRAIN_EXTRA = {"torch", "smplx", "onnx", "onnxscript"}
COLCON_TIMEOUT_S = 600


def third_party_imports(folders: list[Path]) -> set[str]:
    """Top-level names of the modules imported anywhere in the Python files under folders, minus the standard
    library and this repository's own packages."""
    names = set()
    for folder in folders:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - OWN_PACKAGES


def test_package_xml_declares_every_run_time_import_with_a_rosdep_key():
    package = parse_package(REPOSITORY / "package.xml")
    declared = {dependency.name for dependency in package.exec_depends}
    imports = third_party_imports([REPOSITORY / "fasthmr_model", REPOSITORY / "fasthmr_ros", REPOSITORY / "launch"])
    assert "onnxruntime" in imports and "rclpy" in imports  # the scan sees what it must
    undeclared = {name: ROSDEP_KEYS.get(name, name) for name in imports - TRAIN_EXTRA - WITHOUT_ROSDEP_KEY
                  if ROSDEP_KEYS.get(name, name) not in declared}
    assert undeclared == {}
    package_xml = (REPOSITORY / "package.xml").read_text()
    pinned = (REPOSITORY / "requirements-base.txt").read_text()
    for name in WITHOUT_ROSDEP_KEY:
        assert name in imports and f"pip install {name}" in package_xml and f"\n{name}==" in pinned
    assert set(re.findall(r'"(\w+)==', (REPOSITORY / "setup.py").read_text())) <= TRAIN_EXTRA  # the train extra


def test_package_xml_declares_what_the_tests_import():
    package = parse_package(REPOSITORY / "package.xml")
    declared = {dependency.name for dependency in package.exec_depends + package.test_depends}
    keys = dict(ROSDEP_KEYS, pytest="python3-pytest", hypothesis="python3-hypothesis", torch="python3-torch",
                catkin_pkg="python3-catkin-pkg", mcap_ros2="mcap-ros2-support")
    local = {path.stem for path in (REPOSITORY / "test").glob("*.py")}
    imports = third_party_imports([REPOSITORY / "test"]) - local - (TRAIN_EXTRA - {"torch"})
    assert {name: keys.get(name, name) for name in imports if keys.get(name, name) not in declared} == {}


def readme_colcon_command() -> list[str]:
    """The README's `colcon build ...` line, with <repo> replaced by this repository."""
    readme = (REPOSITORY / "README.md").read_text()
    (line,) = re.findall(r"colcon build [^&\n]*", readme)
    return shlex.split(line.replace("<repo>", str(REPOSITORY)))


def test_the_readme_colcon_command_builds_both_packages_and_they_import_from_the_workspace(tmp_path):
    command = readme_colcon_command()
    assert command[:3] == ["colcon", "build", "--base-paths"]
    # What `source /opt/ros/<distro>/setup.bash` gives on a ROS install: the venv's packages and cmake files.
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    environment.update(AMENT_PREFIX_PATH=sys.prefix, CMAKE_PREFIX_PATH=sys.prefix,
                       PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    # The venv's Python for the generated message modules; the wheels carry no test packages to build tests with.
    extra = ["--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"]
    build = subprocess.run(command + extra, cwd=tmp_path, env=environment, capture_output=True, text=True,
                           timeout=COLCON_TIMEOUT_S)
    assert build.returncode == 0, build.stdout + build.stderr
    assert re.findall(r"^Finished <<< (\w+)", build.stdout, re.MULTILINE) == ["fasthmr_msgs", "fasthmr_ros"], build.stdout
    check = ("from fasthmr_msgs.msg import SmplBodyArray; import fasthmr_msgs, fasthmr_ros.node, fasthmr_ros.parameters as p; "
             "SmplBodyArray(); print(fasthmr_msgs.__file__); print(fasthmr_ros.node.__file__); "
             "print(p.default_params_file())")
    imported = subprocess.run(["bash", "-c", f". install/setup.sh && python -c {shlex.quote(check)}"], cwd=tmp_path,
                              env=environment, capture_output=True, text=True, timeout=120)
    assert imported.returncode == 0, imported.stderr
    message_module, node_module, params_file = imported.stdout.split()
    install = tmp_path / "install"
    assert Path(message_module).is_relative_to(install / "fasthmr_msgs"), message_module
    assert Path(node_module).is_relative_to(install / "fasthmr_ros"), node_module
    assert Path(params_file) == install / "fasthmr_ros" / "share" / "fasthmr_ros" / "config" / "fasthmr.yaml"
    for launch_file in ("fasthmr.launch.py", "fasthmr_two_cameras.launch.py"):
        assert (install / "fasthmr_ros" / "share" / "fasthmr_ros" / "launch" / launch_file).is_file()
    assert (install / "fasthmr_ros" / "lib" / "fasthmr_ros" / "fasthmr_node").is_file()  # where `ros2 run` looks
