"""`fasthmr`: the model tool (fasthmr_model.cli) plus the commands that read or write ROS bags.

    fasthmr replay BAG [--bundle B] [--json] [--out OUT_BAG] [--realtime | --offline]
    fasthmr convert 3dpw SEQUENCE.pkl --images DIR --out BAG --body-model SMPL.pkl
    fasthmr convert emdb P*_SEQUENCE_data.pkl [--images DIR] --out BAG --body-model SMPL.pkl
    fasthmr demo [--bundle B] [--out REPORT_DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fasthmr_model import cli as model_cli
from fasthmr_model.errors import InputError


def _topics(args: argparse.Namespace):
    """The topics named on the command line, the node's defaults (config/fasthmr.yaml) for the others."""
    from fasthmr_ros.replay import default_topics

    named = {role: getattr(args, f"{role}_topic") for role in ("image", "camera_info", "mask", "ground_truth")}
    return default_topics()._replace(**{role: topic for role, topic in named.items() if topic})


def _replay(args: argparse.Namespace) -> None:
    if args.realtime:
        if args.offline:
            raise InputError("--offline decodes the recorded tracks in-process: replay without --realtime")
        from fasthmr_ros.realtime import replay_realtime as replay
        report = replay(args.bag, args.bundle, args.out, _topics(args), progress=not args.json)
    else:
        from fasthmr_ros.replay import replay_bag

        report = replay_bag(args.bag, args.bundle, args.out, _topics(args), progress=not args.json,
                            offline=args.offline)
    print(json.dumps(report.as_dict()) if args.json else report.format())
    if report.frames == 0:
        raise InputError(f"nothing in {args.bag} could be replayed: {report.nothing_replayed_reason()}")


def _convert(args: argparse.Namespace) -> None:
    from fasthmr_model.body.lbs import BodyModel
    from fasthmr_model.data.datasets import read_3dpw, read_emdb
    from fasthmr_ros.recordings import dataset_frames, write_recording

    body = BodyModel.from_file(args.body_model)
    if args.dataset == "3dpw":
        if args.images is None:
            raise InputError("3DPW keeps its images apart: pass the sequence's folder, --images imageFiles/SEQUENCE")
        sequence = read_3dpw(args.annotations, args.images, body)
    else:
        sequence = read_emdb(args.annotations, body, args.images)
    count = write_recording(args.out, dataset_frames(sequence, body, args.masks), body, _topics(args), args.storage)
    print(f"wrote {count} frames of {sequence.name} into {args.out}")


def _demo(args: argparse.Namespace) -> None:
    from fasthmr_ros.demo import run_demo

    run_demo(args.bundle, Path(args.out) if args.out else None)


def _add_topic_options(parser: argparse.ArgumentParser) -> None:
    for role in ("image", "camera_info", "mask", "ground_truth"):
        parser.add_argument(f"--{role.replace('_', '-')}-topic",
                            help="default: the node's (config/fasthmr.yaml); ground truth: /fasthmr/ground_truth; "
                                 "an image or mask topic absent from the bag is looked for as <topic>/compressed")


def add_ros_commands(commands) -> None:
    """The bag commands, added to the model tool's subparsers."""
    replay = commands.add_parser("replay", help="run a rosbag2 bag through the node's pipeline; latency and accuracy")
    replay.add_argument("bag", help="rosbag2 folder (MCAP or sqlite3) or .mcap file")
    replay.add_argument("--bundle", help="bundle folder (default: the shipped default bundle)")
    replay.add_argument("--out", help="write the outputs (bodies, people, markers) into this new bag")
    replay.add_argument("--json", action="store_true", help="one JSON object on stdout")
    replay.add_argument("--offline", action="store_true",
                        help="also decode each track with windows centred on each frame (the paper's mode: a "
                             "recording has the future) and report it beside the causal result")
    replay.add_argument("--realtime", action="store_true",
                        help="publish at the recorded rate through the real node over loopback DDS")
    _add_topic_options(replay)
    replay.set_defaults(handler=_replay)

    convert = commands.add_parser("convert", help="turn a 3DPW or EMDB sequence into a bag with ground truth")
    convert.add_argument("dataset", choices=("3dpw", "emdb"))
    convert.add_argument("annotations", help="3DPW: sequenceFiles/*/SEQUENCE.pkl; EMDB: P*/SEQUENCE/P*_SEQUENCE_data.pkl")
    convert.add_argument("--images", help="the sequence's image folder (3DPW: imageFiles/SEQUENCE; EMDB default: "
                                          "images beside the .pkl)")
    convert.add_argument("--masks", help="PNG instance masks named like the images (default: rendered from the "
                                         "ground-truth meshes)")
    convert.add_argument("--body-model", required=True,
                         help="the SMPL model file the ground truth is posed on (e.g. SMPL_NEUTRAL.pkl)")
    convert.add_argument("--out", required=True, help="the bag to write (must not exist)")
    convert.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    _add_topic_options(convert)
    convert.set_defaults(handler=_convert)

    demo = commands.add_parser("demo", help="make the synthetic demo bag, replay it, write a report folder")
    demo.add_argument("--bundle", help="bundle folder (default: the shipped default bundle)")
    demo.add_argument("--out", help="report folder (default: ~/.cache/fasthmr/demo/report)")
    demo.set_defaults(handler=_demo)


def main(argv: list[str] | None = None) -> int:
    return model_cli.main(argv, extensions=(add_ros_commands,))


if __name__ == "__main__":
    sys.exit(main())
