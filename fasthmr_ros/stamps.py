"""Message stamps <-> numbers: seconds for the library, exact integer nanoseconds as keys, and back."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from std_msgs.msg import Header

NANOSECONDS_PER_SECOND = 10**9


def stamp_seconds(header: Header) -> float:
    """The header's stamp in seconds (what the library's stream takes)."""
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def stamp_nanoseconds(header: Header) -> int:
    """The stamp as an exact integer (a key that matches messages of the same frame)."""
    return header.stamp.sec * NANOSECONDS_PER_SECOND + header.stamp.nanosec


def stamp_from_nanoseconds(nanoseconds: int) -> Time:
    """A builtin_interfaces/Time of an integer time in nanoseconds (>= 0)."""
    seconds, nanosec = divmod(int(nanoseconds), NANOSECONDS_PER_SECOND)
    return Time(sec=seconds, nanosec=nanosec)


def stamp_from_seconds(seconds: float) -> Time:
    """A builtin_interfaces/Time of a time in seconds (>= 0), to the nearest nanosecond."""
    return stamp_from_nanoseconds(round(seconds * NANOSECONDS_PER_SECOND))
