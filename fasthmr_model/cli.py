"""`fasthmr`: the model tool (bundle info, checkpoint conversion, bundle creation, demo).

Every library error (FastHMRError) is printed as one line on stderr with exit status 2; heavy imports
(torch) happen inside the subcommands that need them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fasthmr_model.errors import FastHMRError


def _info(args: argparse.Namespace) -> None:
    from fasthmr_model.bundle import describe_bundle, load_bundle

    print(describe_bundle(load_bundle(args.bundle)))


def _convert_hmr2(args: argparse.Namespace) -> None:
    from fasthmr_model.checkpoints import convert_hmr2_state, load_checkpoint_state
    from fasthmr_model.tools import bundle_with_body_model, encoder_parity

    model = convert_hmr2_state(load_checkpoint_state(args.checkpoint), args.backbone_heads, args.head_heads)
    provenance = {"source": "hmr2-checkpoint", "checkpoint": str(Path(args.checkpoint).resolve()),
                  "description": "converted from a 4D-Humans HMR2.0 Lightning checkpoint"}
    bundle = bundle_with_body_model(model, Path(args.out), provenance, args.body_model, None, args.overwrite)
    error = encoder_parity(model, bundle)
    print(f"wrote {bundle.path}: {model.config.depth} blocks x {model.config.width}; "
          f"ONNX Runtime vs PyTorch max abs difference {error:.2e}")


def _init_bundle(args: argparse.Namespace) -> None:
    from fasthmr_model.encoder.config import preset
    from fasthmr_model.encoder.model import build_encoder
    from fasthmr_model.tools import bundle_with_body_model

    model = build_encoder(preset(args.preset), seed=args.seed)
    provenance = {"source": "untrained", "seed": args.seed,
                  "description": f"randomly initialised {args.preset} encoder: for timing and plumbing, not accuracy"}
    bundle = bundle_with_body_model(model, Path(args.out), provenance, args.body_model, args.preset, args.overwrite)
    print(f"wrote {bundle.path}")


def _demo(args: argparse.Namespace) -> None:
    from fasthmr_model.demo import run_demo

    run_demo(args.bundle)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fasthmr", description="FastHMR model tool")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="print a bundle's manifest")
    info.add_argument("bundle", nargs="?", help="bundle folder (default: the shipped default bundle)")
    info.set_defaults(run=_info)

    convert = commands.add_parser("convert-hmr2", help="convert a 4D-Humans HMR2.0 checkpoint into a bundle")
    convert.add_argument("checkpoint", help="the HMR2.0 Lightning .ckpt file")
    convert.add_argument("--out", required=True, help="bundle folder to write")
    convert.add_argument("--backbone-heads", type=int, help="backbone attention heads (default: width / 80)")
    convert.add_argument("--head-heads", type=int, help="SMPL head attention heads (default: 8)")
    convert.add_argument("--body-model", help="SMPL .pkl/.npz to ship in the bundle (default: the synthetic body)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    convert.set_defaults(run=_convert_hmr2)

    init = commands.add_parser("init-bundle", help="write a randomly initialised bundle of a preset")
    init.add_argument("--preset", default="tiny", help="encoder preset: tiny or hmr2-vith")
    init.add_argument("--seed", type=int, default=0)
    init.add_argument("--out", required=True, help="bundle folder to write")
    init.add_argument("--body-model", help="SMPL .pkl/.npz to ship in the bundle (default: the synthetic body)")
    init.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    init.set_defaults(run=_init_bundle)

    demo = commands.add_parser("demo", help="run the pipeline on a synthetic frame and print what it found")
    demo.add_argument("--bundle", help="bundle folder (default: the shipped default bundle)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except FastHMRError as error:
        print(f"fasthmr {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
