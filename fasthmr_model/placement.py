"""Which provider runs which nodes of a graph, from ONNX Runtime's own profile of one run.

With TensorRT, the nodes it takes appear as fused TensorRT kernels and the rest under the CUDA or CPU
provider, by operator type: what falls back, and how much time it takes. The same report on the CUDA
provider shows the nodes left to the CPU (each one a copy between the devices).

    report = placement_report(bundle.encoder_path, RuntimeConfig(provider="tensorrt"), feeds)
    # {"TensorrtExecutionProvider": {"TRTKernel...": {"nodes": 1, "ms": 3.1}}, "CUDAExecutionProvider": {...}}

Run-time module: numpy and onnxruntime only.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from fasthmr_model.runtime import RuntimeConfig, create_session

KERNEL_SUFFIX = "_kernel_time"


def placement_report(model_path: Path, config: RuntimeConfig, feeds: dict[str, np.ndarray], runs: int = 3,
                     sha256: str | None = None, batch_inputs: dict[str, tuple[int, ...]] | None = None) -> dict:
    """{"provider": obtained, "nodes": {provider: {op_type: {"nodes": count, "ms": time per run}}}} of `runs`
    runs of the graph on config's provider chain (the first run, which may build engines, is not counted)."""
    with tempfile.TemporaryDirectory(prefix="fasthmr-profile-") as folder:
        opened = create_session(model_path, config, sha256=sha256, batch_inputs=batch_inputs,
                                profile_prefix=str(Path(folder) / "profile"))
        feeds = {name: np.ascontiguousarray(array, np.float32) for name, array in feeds.items()}
        for _ in range(runs + 1):
            opened.session.run(None, feeds)
        events = json.loads(Path(opened.session.end_profiling()).read_text())
    return {"provider": opened.provider, "device": opened.device, "precision": opened.precision,
            "nodes": summarise_profile(events, skip_runs=1)}


def summarise_profile(events: list[dict], skip_runs: int = 0) -> dict[str, dict[str, dict]]:
    """ONNX Runtime profile events -> {provider: {op_type: {"nodes": distinct nodes, "ms": mean per run}}},
    leaving out the first skip_runs runs (a run starts with the first node of the graph again)."""
    first_node = next((event["name"] for event in events if _is_kernel(event)), None)
    runs, seen_runs = defaultdict(float), 0
    nodes: dict[tuple[str, str], set] = defaultdict(set)
    for event in events:
        if not _is_kernel(event):
            continue
        if event["name"] == first_node:
            seen_runs += 1
        if seen_runs <= skip_runs:
            continue
        key = (event["args"]["provider"], event["args"]["op_name"])
        nodes[key].add(event["name"][:-len(KERNEL_SUFFIX)])
        runs[key] += event.get("dur", 0) / 1e3
    timed_runs = max(seen_runs - skip_runs, 1)
    report: dict[str, dict[str, dict]] = defaultdict(dict)
    for (provider, op_type), names in sorted(nodes.items()):
        report[provider][op_type] = {"nodes": len(names), "ms": round(runs[(provider, op_type)] / timed_runs, 3)}
    return dict(report)


def _is_kernel(event: dict) -> bool:
    return event.get("cat") == "Node" and event.get("name", "").endswith(KERNEL_SUFFIX) and "provider" in event.get(
        "args", {})


def format_placement(report: dict) -> str:
    lines = [f"node placement ({report['provider']} on {report['device']}, {report['precision']}):"]
    for provider, ops in report["nodes"].items():
        total = sum(values["ms"] for values in ops.values())
        count = sum(values["nodes"] for values in ops.values())
        lines.append(f"  {provider}: {count} nodes, {total:.2f} ms per run")
        for op_type, values in sorted(ops.items(), key=lambda item: -item[1]["ms"]):
            lines.append(f"    {op_type:<28} {values['nodes']:4d} nodes {values['ms']:9.3f} ms")
    return "\n".join(lines)
