"""What differs between the rclpy of ROS 2 Jazzy (7.x, the LTS) and of Kilted (9.x) that the node uses.

Jazzy's rclpy has no post-set parameter callbacks (and no `with rclpy.init()`, which the node avoids by
calling rclpy.init and rclpy.try_shutdown itself).
"""

from __future__ import annotations

from collections.abc import Callable

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter


def add_parameter_callbacks(node: Node, check: Callable[[list[Parameter]], SetParametersResult],
                            apply: Callable[[list[Parameter]], None]) -> None:
    """check(parameters) decides on a change before it is made; apply(parameters) takes an accepted change.

    Kilted: apply is a post-set callback, run once the values are set. Jazzy: apply runs inside the set
    callback right after check accepted the change (the values are set just after it; apply must take them
    from its argument, not from node.get_parameter). With only this pair of callbacks on the node, the two
    orders give the same result.
    """
    if hasattr(node, "add_post_set_parameters_callback"):
        node.add_on_set_parameters_callback(check)
        node.add_post_set_parameters_callback(apply)
        return

    def check_then_apply(parameters: list[Parameter]) -> SetParametersResult:
        result = check(parameters)
        if result.successful:
            apply(parameters)
        return result

    node.add_on_set_parameters_callback(check_then_apply)
