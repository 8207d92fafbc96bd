"""`fasthmr bench`'s pieces on tiny untrained bundles: the four variants, the side-by-side summary, the plot."""

from __future__ import annotations

import json

from PIL import Image

from fasthmr_model.bench import VARIANTS, dumps, format_table, plot, summarise, time_variants, variant_plans
from fasthmr_model.encoder.config import PRESETS
from fasthmr_model.encoder.merge_plan import MergePlan
from fasthmr_model.encoder.model import build_encoder
from fasthmr_model.export import build_bundle
from fasthmr_model.runtime import RuntimeConfig


def test_four_variants_side_by_side(tmp_path):
    merged = MergePlan(merged_windows=((10, 11),), token_schedule=(40, 40, 22))
    plans = variant_plans(merged)
    assert list(plans) == list(VARIANTS)
    assert plans["eclm"] == MergePlan(merged_windows=((10, 11),))
    assert plans["mask_tome"] == MergePlan(token_schedule=(40, 40, 22)) and plans["both"] == merged
    bundles = {name: build_bundle(build_encoder(PRESETS["tiny"], seed=1, plan=plan), tmp_path / name,
                                  provenance={"source": "untrained"}, camera_anchor="pelvis", preset_name="tiny")
               for name, plan in plans.items()}
    latencies, where = time_variants(bundles, batch=2, warmup=1, repeats=3, runtime=RuntimeConfig(provider="cpu"))
    assert all(len(values) == 3 and min(values) > 0 for values in latencies.values())
    assert where == {"provider": "CPUExecutionProvider", "device": "cpu", "precision": "fp32"}
    single, _ = time_variants(bundles, batch=1, warmup=1, repeats=3, runtime=RuntimeConfig(provider="cpu"))
    summary = summarise(bundles, single, latencies, batch=2)
    assert summary["base"]["flops_ratio"] == 1.0 and summary["base"]["speedup"] == 1.0
    assert summary["base"]["latency_speedup"] == 1.0 and summary["both"]["batch"] == 2
    assert summary["both"]["flops_ratio"] > summary["mask_tome"]["flops_ratio"] > summary["eclm"]["flops_ratio"] > 1
    for values in summary.values():
        assert values["throughput"] > 0 and values["latency_ms"] > 0
    result = {"runtime": dict(where, provider_requested="cpu", batches=[1, 2]), "hmr2-vith": summary, "tiny": {name: {**values, "mpjpe": 100.0 + i} for i, (name, values)
                                              in enumerate(summary.items())}}
    assert set(json.loads(dumps(result))["tiny"]["both"]) == {"latency_ms", "throughput", "flops_ratio", "speedup",
                                                              "latency_speedup", "batch", "mpjpe"}
    assert "test MPJPE" in format_table(result) and "CPUExecutionProvider on cpu, fp32" in format_table(result)
    figure = plot(result, tmp_path / "bench.png")
    assert Image.open(figure).size[0] > 500
