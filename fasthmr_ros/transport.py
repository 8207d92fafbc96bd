"""The DDS transport FastHMR-ROS ships for camera images, and when it applies.

Fast DDS's defaults lose most 640x480 and larger images sent best effort between two processes (its 512 KB
shared-memory segment holds none of them). config/fastdds_large_images.xml is a participant profile with a
32 MB segment. `fasthmr_node` and the launch file apply it through the environment, before rclpy creates
its DDS participant, unless the environment already holds the user's own DDS settings: any FASTDDS_* or
FASTRTPS_* variable, or RMW_IMPLEMENTATION naming another middleware. Those always win.

Fast DDS 3 (ROS 2 Kilted and newer) reads FASTDDS_DEFAULT_PROFILES_FILE; Fast DDS 2 (Jazzy, Humble) reads
FASTRTPS_DEFAULT_PROFILES_FILE; setting both confuses Kilted's rmw, so exactly the one this install reads is
set. `python -m fasthmr_ros.transport_bench` measures what the profile changes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from fasthmr_ros.parameters import config_file

PROFILES_FILE_NAME = "fastdds_large_images.xml"
FAST_DDS_RMWS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
# Prefixes of the variables that configure Fast DDS (profiles files, builtin transports, ...).
FAST_DDS_VARIABLE_PREFIXES = ("FASTDDS_", "FASTRTPS_")
PROFILES_VARIABLE_FAST_DDS_3 = "FASTDDS_DEFAULT_PROFILES_FILE"
PROFILES_VARIABLE_FAST_DDS_2 = "FASTRTPS_DEFAULT_PROFILES_FILE"


def profiles_file() -> Path:
    """config/fastdds_large_images.xml, installed or in the source checkout."""
    return config_file(PROFILES_FILE_NAME)


def user_dds_settings(environ: Mapping[str, str]) -> list[str]:
    """The variables of environ that say the user configures DDS themselves (sorted names; empty if none)."""
    names = [name for name in environ if name.startswith(FAST_DDS_VARIABLE_PREFIXES)]
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if rmw and rmw not in FAST_DDS_RMWS:
        names.append("RMW_IMPLEMENTATION")
    return sorted(names)


def profiles_variable() -> str:
    """The profiles-file variable the installed Fast DDS reads: Fast DDS 3 installs share/fastdds beside
    rmw_fastrtps_cpp, Fast DDS 2 share/fastrtps. Without an ament index to ask, the current name (Fast DDS 3)."""
    try:
        from ament_index_python.packages import get_package_prefix

        prefix = Path(get_package_prefix("rmw_fastrtps_cpp"))
    except (ImportError, LookupError, ValueError, OSError):  # PackageNotFoundError is a KeyError
        return PROFILES_VARIABLE_FAST_DDS_3
    if not (prefix / "share" / "fastdds").is_dir() and (prefix / "share" / "fastrtps").is_dir():
        return PROFILES_VARIABLE_FAST_DDS_2
    return PROFILES_VARIABLE_FAST_DDS_3


def transport_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables that apply the shipped profile, or {} when environ (default os.environ) holds the user's
    own DDS settings (user_dds_settings)."""
    environ = os.environ if environ is None else environ
    if user_dds_settings(environ):
        return {}
    return {profiles_variable(): str(profiles_file())}


def apply_shipped_transport() -> str:
    """Applies transport_environment() to os.environ (call before rclpy.init); returns what was done, to log."""
    own = user_dds_settings(os.environ)
    if own:
        return f"DDS transport: the environment's own settings ({', '.join(own)})"
    variables = transport_environment()
    os.environ.update(variables)
    return "DDS transport: " + ", ".join(f"{name}={value}" for name, value in variables.items())
