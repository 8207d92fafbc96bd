"""Installs fasthmr_model (the ROS-free model library) and fasthmr_ros (the ROS 2 adapter).

Works with pip (`pip install -e .`, which `make setup` runs) and as an ament_python package under
colcon: the data_files below are what ament_index and `ros2 launch` look for in share/.
Torch is deliberately not an install requirement: `make setup` installs the pinned CPU build from
requirements.txt, and an unpinned torch would pull a multi-GB CUDA build. Training, conversion and
export need the "train" extra. Nor is ONNX Runtime: its CPU build (onnxruntime) and its GPU build
(onnxruntime-gpu) share one import name and must not both be installed, and a requirement on either would
pull it back over the other. `make setup` installs one (requirements-cpu.txt / requirements-gpu.txt); a
plain pip install names it as an extra: `pip install .[cpu]` or `pip install .[gpu]`.
"""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = "fasthmr_ros"


def files_in(pattern):
    """Plain files matching a glob pattern relative to this folder (sub-folders are skipped)."""
    return sorted(path for path in glob(pattern) if os.path.isfile(path))


setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    description="Real-time 3D human mesh recovery (FastHMR) as a ROS 2 node, on ONNX Runtime",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["fasthmr_model", "fasthmr_model.*", "fasthmr_ros", "fasthmr_ros.*"]),
    # The small default bundle that ships inside the package, so everything runs with no download.
    package_data={"fasthmr_model": ["default_bundle/*", "decoder/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE_NAME]),
        ("share/" + PACKAGE_NAME, ["package.xml"]),
        ("share/" + PACKAGE_NAME + "/launch", files_in("launch/*.launch.py")),
        ("share/" + PACKAGE_NAME + "/config", files_in("config/*")),
    ],
    install_requires=["numpy", "pillow", "simplejpeg"],
    extras_require={
        "cpu": ["onnxruntime"],
        "gpu": ["onnxruntime-gpu[cuda,cudnn]"],
        "train": ["torch==2.13.0", "smplx", "onnx", "onnxscript"],
        # `colcon test` runs pytest only for packages that declare it as a test dependency.
        "test": ["pytest", "hypothesis", "rosbags"],
    },
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "fasthmr = fasthmr_ros.cli:main",
            "fasthmr_node = fasthmr_ros.node:main",
            "fasthmr_node_bench = fasthmr_ros.bench:main",
        ],
    },
)
