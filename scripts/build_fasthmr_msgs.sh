#!/usr/bin/env bash
# Builds the fasthmr_msgs interface package (msg/) with plain cmake from the ROS 2 wheels and
# installs it into a Python venv, so that `import fasthmr_msgs.msg` works there with no colcon and
# no sourced ROS install. Safe to run again: it rebuilds incrementally.
#
# Usage: scripts/build_fasthmr_msgs.sh [VENV]
#   VENV defaults to $VIRTUAL_ENV, else the repository's .venv. It must already hold the ROS 2
#   wheels listed in requirements.txt (rosidl generators, ament_cmake, catkin-pkg, the message
#   packages). The build folder is build/fasthmr_msgs/<venv folder name> (git-ignored), one per venv.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${VIRTUAL_ENV:-$repo_root/.venv}}"
venv="$(cd "$venv" 2>/dev/null && pwd)" || {
    echo "build_fasthmr_msgs: no venv at '${1:-${VIRTUAL_ENV:-$repo_root/.venv}}'; run 'make setup' first." >&2
    exit 1
}
python="$venv/bin/python"
if [[ ! -x "$python" ]]; then
    echo "build_fasthmr_msgs: $python does not exist; run 'make setup' first." >&2
    exit 1
fi
if [[ ! -d "$venv/share/rosidl_default_generators" ]]; then
    echo "build_fasthmr_msgs: the ROS 2 wheels are not installed in $venv;" \
         "run '$venv/bin/pip install -r $repo_root/requirements.txt' first." >&2
    exit 1
fi

# The wheels' Python generator exports name the include folders of the machine that built them
# (/opt/python/cpXY-cpXY/include/pythonX.Y and its numpy's include folder). Point them at this
# venv's Python headers and numpy headers, or the generated C extension does not compile.
"$python" - "$venv" <<'PYTHON'
import glob
import os
import re
import sys
import sysconfig

import numpy

venv = sys.argv[1]
python_include = sysconfig.get_paths()["include"]
numpy_include = numpy.get_include()
python_include_pattern = re.compile(r'[^";]*/include/python3\.\d+')
numpy_include_pattern = re.compile(r'[^";]*/numpy/(?:_core|core)/include')

export_files = glob.glob(os.path.join(venv, "share", "*", "cmake", "export_*__rosidl_generator_pyExport.cmake"))
rewritten = 0
for path in export_files:
    with open(path) as f:
        text = f.read()
    new_lines = []
    for line in text.splitlines(keepends=True):
        if "INTERFACE_INCLUDE_DIRECTORIES" in line:
            line = python_include_pattern.sub(lambda _: python_include, line)
            line = numpy_include_pattern.sub(lambda _: numpy_include, line)
        new_lines.append(line)
    new_text = "".join(new_lines)
    if new_text != text:
        temp_path = path + ".tmp"
        with open(temp_path, "w") as f:
            f.write(new_text)
        os.replace(temp_path, path)
        rewritten += 1
print(f"build_fasthmr_msgs: include paths point at {python_include} and {numpy_include} "
      f"({rewritten} of {len(export_files)} export files rewritten)")
PYTHON

build_dir="$repo_root/build/fasthmr_msgs/$(basename "$venv")"
# A build folder configured for another source tree or venv (a copied checkout) cannot be reused.
cache="$build_dir/CMakeCache.txt"
if [[ -f "$cache" ]] && ! { grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$repo_root/msg" "$cache" &&
                            grep -qxF "CMAKE_INSTALL_PREFIX:PATH=$venv" "$cache"; }; then
    echo "build_fasthmr_msgs: $build_dir was configured elsewhere; starting it afresh"
    rm -rf "$build_dir"
fi

export AMENT_PREFIX_PATH="$venv"
cmake -S "$repo_root/msg" -B "$build_dir" \
    -DCMAKE_PREFIX_PATH="$venv" \
    -DCMAKE_INSTALL_PREFIX="$venv" \
    -DPython3_EXECUTABLE="$python" \
    -DBUILD_TESTING=OFF \
    -DCMAKE_BUILD_TYPE=Release
cmake --build "$build_dir" --parallel "$(nproc)"
cmake --install "$build_dir"

"$python" -c "import fasthmr_msgs.msg as m; m.SmplBodyArray(); print('build_fasthmr_msgs: fasthmr_msgs installed in $venv')"
