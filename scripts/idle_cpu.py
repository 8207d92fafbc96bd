"""The CPU an active node costs with no input: `python scripts/idle_cpu.py [--seconds 30]`.

Starts `python -m fasthmr_ros.node` with config/fasthmr.yaml (DDS on loopback, a ROS domain of its own, input
topics no one publishes), waits until it is active, reads the process's CPU time (user + system, from
/proc) over `--seconds` of wall time, prints it as a share of one core, and stops the node with SIGINT
(it must exit with 0). Linux only.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    name = f"fasthmr_idle_{os.getpid()}"
    environment = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                       ROS_DOMAIN_ID=str(1 + os.getpid() % 101), PYTHONPATH=str(REPOSITORY),
                       AMENT_PREFIX_PATH=os.environ.get("AMENT_PREFIX_PATH", sys.prefix))
    command = [sys.executable, "-m", "fasthmr_ros.node", "--ros-args", "--params-file",
               str(REPOSITORY / "config" / "fasthmr.yaml"), "-r", f"__node:={name}",
               "-p", f"image_topic:=/{name}/image_raw", "-p", f"mask_topic:=/{name}/person_instances",
               "-p", f"camera_info_topic:=/{name}/camera_info"]
    node = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        for line in node.stderr:
            if "]: active:" in line:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"the node did not become active within {START_TIMEOUT_S:.0f} s")
        else:
            raise SystemExit(f"the node stopped before it became active (exit code {node.wait()})")
        time.sleep(1.0)  # let the start-up settle
        start_cpu, start = cpu_seconds(node.pid), time.monotonic()
        time.sleep(args.seconds)
        share = (cpu_seconds(node.pid) - start_cpu) / (time.monotonic() - start)
        print(f"idle active node: {100 * share:.2f} % of one core over {args.seconds:.0f} s "
              f"(CPU time from /proc/{node.pid}/stat)")
    finally:
        node.send_signal(signal.SIGINT)
        code = node.wait(timeout=10)
    print(f"the node exited with {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
