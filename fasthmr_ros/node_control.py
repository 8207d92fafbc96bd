"""`python -m fasthmr_ros.node_control`: the node's parameters and lifecycle, where `ros2 param` and
`ros2 lifecycle` are missing (ros2cli is not on PyPI). It calls the node's own services with rclpy.

    python -m fasthmr_ros.node_control [--node /fasthmr] get markers.mesh_rate
    python -m fasthmr_ros.node_control set markers.mesh_rate 5.0      # YAML value: 5.0, true, cpu, ...
    python -m fasthmr_ros.node_control state
    python -m fasthmr_ros.node_control configure | activate | deactivate | cleanup | shutdown

Exit status 0 when the node did what was asked, 1 when it refused (the reason is printed) or did not answer.
"""

from __future__ import annotations

import argparse
import sys

import yaml

TRANSITIONS = ("configure", "activate", "deactivate", "cleanup", "shutdown")
SERVICE_TIMEOUT_S = 10.0


def _parameter_value(text: str, current_type: int):
    """A ParameterValue from YAML text, as `ros2 param set` reads it; an integer for a floating-point parameter
    (current_type) is taken as the number it is."""
    from rcl_interfaces.msg import ParameterType, ParameterValue

    value = yaml.safe_load(text)
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int) and current_type != ParameterType.PARAMETER_DOUBLE:
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, (int, float)):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
    return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=text if value is None else str(value))


def _shown(value) -> str:
    from rclpy.parameter import parameter_value_to_python

    return repr(parameter_value_to_python(value))


def run(node_name: str, command: str, arguments: list[str]) -> tuple[bool, str]:
    """(done, what to print)."""
    import rclpy
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rcl_interfaces.msg import Parameter
    from rcl_interfaces.srv import GetParameters, SetParameters

    rclpy.init()
    node = rclpy.create_node("fasthmr_node_control")
    try:
        def call(service_type, service: str, request):
            client = node.create_client(service_type, f"{node_name}/{service}")
            if not client.wait_for_service(timeout_sec=SERVICE_TIMEOUT_S):
                raise TimeoutError(f"no node {node_name} answers (is it running, in this ROS_DOMAIN_ID?)")
            future = client.call_async(request)
            rclpy.spin_until_future_complete(node, future, timeout_sec=SERVICE_TIMEOUT_S)
            if not future.done():
                raise TimeoutError(f"{node_name}/{service} did not answer within {SERVICE_TIMEOUT_S} s")
            return future.result()

        if command in ("get", "set"):
            # An unknown name gets no value (Kilted) or an unset one (Jazzy).
            values = call(GetParameters, "get_parameters", GetParameters.Request(names=arguments[:1])).values
            if not values or not values[0].type:
                return False, f"no parameter {arguments[0]} on {node_name}"
        if command == "get":
            return True, f"{arguments[0]}: {_shown(values[0])}"
        if command == "set":
            value = _parameter_value(arguments[1], values[0].type)
            request = SetParameters.Request(parameters=[Parameter(name=arguments[0], value=value)])
            (result,) = call(SetParameters, "set_parameters", request).results
            return result.successful, f"set {arguments[0]}" if result.successful else f"refused: {result.reason}"
        if command == "state":
            return True, call(GetState, "get_state", GetState.Request()).current_state.label
        request = ChangeState.Request()
        request.transition.id = {"configure": Transition.TRANSITION_CONFIGURE,
                                 "activate": Transition.TRANSITION_ACTIVATE,
                                 "deactivate": Transition.TRANSITION_DEACTIVATE,
                                 "cleanup": Transition.TRANSITION_CLEANUP}.get(command, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        if command == "shutdown":  # the shutdown transition's id depends on the state it leaves
            state = call(GetState, "get_state", GetState.Request()).current_state.id
            request.transition.id = {State.PRIMARY_STATE_INACTIVE: Transition.TRANSITION_INACTIVE_SHUTDOWN,
                                     State.PRIMARY_STATE_ACTIVE: Transition.TRANSITION_ACTIVE_SHUTDOWN}.get(
                state, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        done = call(ChangeState, "change_state", request).success
        return done, f"{command}: {'done' if done else 'refused (see the node log)'}"
    except TimeoutError as error:
        return False, str(error)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fasthmr_ros.node_control", description=__doc__.split("\n")[0])
    parser.add_argument("--node", default="/fasthmr", help="the node's full name (default /fasthmr; /cam1/fasthmr "
                        "in namespace cam1)")
    parser.add_argument("command", choices=("get", "set", "state", *TRANSITIONS))
    parser.add_argument("arguments", nargs="*", help="get: NAME; set: NAME VALUE")
    args = parser.parse_args(argv)
    wanted = {"get": 1, "set": 2}.get(args.command, 0)
    if len(args.arguments) != wanted:
        parser.error(f"{args.command} takes {wanted} argument(s)")
    done, text = run("/" + args.node.strip("/"), args.command, args.arguments)
    print(text, file=sys.stdout if done else sys.stderr)
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
