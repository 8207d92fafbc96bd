"""`fasthmr`: the model tool (bundle info, checkpoint conversion, bundle creation, world, training, evaluation,
merging, bench).

The installed `fasthmr` command is fasthmr_ros.cli, which adds the ROS commands (replay, convert, demo);
`python -m fasthmr_model.cli` is this tool alone.

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
    from fasthmr_model.bundle import sha256_of
    from fasthmr_model.checkpoints import convert_hmr2_state, load_checkpoint_state
    from fasthmr_model.export import build_bundle, encoder_parity

    model = convert_hmr2_state(load_checkpoint_state(args.checkpoint), args.backbone_heads, args.head_heads)
    # The checkpoint by file name and checksum: a manifest never records a machine's paths.
    provenance = {"source": "hmr2-checkpoint", "checkpoint": Path(args.checkpoint).name,
                  "checkpoint_sha256": sha256_of(Path(args.checkpoint)),
                  "description": "converted from a 4D-Humans HMR2.0 Lightning checkpoint"}
    bundle = build_bundle(model, Path(args.out), provenance=provenance, camera_anchor="body_origin",
                          body_model=args.body_model, overwrite=args.overwrite)
    error = encoder_parity(model, bundle)
    print(f"wrote {bundle.path}: {model.config.depth} blocks x {model.config.width}; "
          f"ONNX Runtime vs PyTorch max abs difference {error:.2e}")


def _init_bundle(args: argparse.Namespace) -> None:
    from fasthmr_model.export import write_untrained_bundle

    bundle = write_untrained_bundle(args.preset, Path(args.out), seed=args.seed, body_model=args.body_model,
                                    overwrite=args.overwrite)
    print(f"wrote {bundle.path}")


def _world_build(args: argparse.Namespace) -> None:
    from fasthmr_model.data.world import build_split, load_crop_set

    body_model = _world_body_model(args.cache, args.body_model)
    for name in args.split:
        folder = build_split(name, args.cache, body_model, workers=args.workers, frames=args.frames)
        print(f"{name}: {len(load_crop_set(folder))} person crops in {folder}")


def _world_sequences(args: argparse.Namespace) -> None:
    from fasthmr_model.data.world import load_crop_set
    from fasthmr_model.decoder.sequences import build_sequence_split, sequence_ranges

    body_model = _world_body_model(args.cache, args.body_model)
    if args.seed is not None and len(args.split) != 1:
        raise FastHMRError("--seed renders one named split: give one --split NAME")
    for name in args.split:
        folder = build_sequence_split(name, args.cache, body_model, workers=args.workers, sequences=args.sequences,
                                      frames=args.frames, seed=args.seed)
        crops = load_crop_set(folder)
        print(f"{name}: {len(sequence_ranges(crops))} sequences, {len(crops)} frames in {folder}")


def _world_body_model(cache: Path, body_model: str | None) -> Path:
    """The user's body model file, or the synthetic body written once into the cache."""
    from fasthmr_model.data.world import synthetic_body_path

    return Path(body_model) if body_model is not None else synthetic_body_path(cache)


def _train_encoder(args: argparse.Namespace) -> None:
    from fasthmr_model.data.world import build_split
    from fasthmr_model.export import build_bundle
    from fasthmr_model.train.encoder import train_encoder, training_provenance
    from fasthmr_model.train.recipes import EncoderTrainingConfig

    body_model = _world_body_model(args.cache, args.body_model)
    data = build_split("train", args.cache, body_model, frames=args.frames)
    config = _training_config(EncoderTrainingConfig(), args)
    model = train_encoder(data, Path(args.run), body_model, config, progress=not args.quiet)
    bundle = build_bundle(model, Path(args.out), provenance=training_provenance(data, Path(args.run), config),
                          camera_anchor="pelvis", body_model=body_model, preset_name=config.preset, overwrite=True)
    print(f"wrote {bundle.path}")


def _training_config(recipe, args: argparse.Namespace):
    """The training config `recipe` (a frozen dataclass) with the flags that set its fields (each flag's dest is
    the field's name, and its default the recipe's value)."""
    from dataclasses import fields, replace

    return replace(recipe, **{field.name: getattr(args, field.name) for field in fields(recipe)
                              if hasattr(args, field.name)})


def _train_vae(args: argparse.Namespace) -> None:
    from fasthmr_model.decoder.config import DecoderConfig
    from fasthmr_model.decoder.train import train_vae, vae_reconstruction_mm
    from fasthmr_model.train.recipes import VAE_RECIPE

    body_model = _world_body_model(args.cache, args.body_model)
    sizes = DecoderConfig(window=args.window, latent_tokens=args.latent_tokens, latent_size=args.latent_size,
                          vae_layers=args.layers, denoiser_layers=args.layers)
    errors = None
    if not args.plain:
        from fasthmr_model.decoder.export import bundle_encoder_errors

        errors = bundle_encoder_errors(args.bundle, args.cache, progress=not args.quiet)
    vae = train_vae(Path(args.run), body_model, sizes, _training_config(VAE_RECIPE, args),
                    amass_files=args.amass, errors=errors, progress=not args.quiet)
    print(f"VAE in {args.run}; held-out reconstruction: {vae_reconstruction_mm(vae, body_model)}")


def _train_decoder(args: argparse.Namespace) -> None:
    from fasthmr_model.decoder.export import train_and_bundle_decoder
    from fasthmr_model.train.recipes import DENOISER_RECIPE

    bundle = train_and_bundle_decoder(Path(args.run), Path(args.vae_run), args.bundle, Path(args.out), args.cache,
                                      _training_config(DENOISER_RECIPE, args), progress=not args.quiet,
                                      splits=tuple(args.sequences), sequence_count=args.sequence_count)
    print(f"wrote {bundle.path}")


def _eval(args: argparse.Namespace) -> None:
    import json

    from fasthmr_model.bundle import load_bundle
    from fasthmr_model.data.world import build_split, load_crop_set
    from fasthmr_model.evaluation import evaluate_bundle
    from fasthmr_model.runtime import RuntimeConfig, check_provider

    bundle = load_bundle(args.bundle)
    check_provider(args.provider)
    # One runtime for every session the evaluation opens (the encoder's, and the decoder's with --sequences).
    runtime = RuntimeConfig(provider=args.provider, precision=args.precision, threads=args.threads)
    if args.sequences:
        _eval_sequences(args, bundle, runtime)
        return
    crops = load_crop_set(build_split(args.split, args.cache, _world_body_model(args.cache, None), frames=args.frames,
                                      progress=False))
    result = evaluate_bundle(bundle, crops, runtime)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{bundle.path} on the synthetic {args.split} split ({result['frames']} frames, "
          f"{result['persons']} persons), {result['provider']} on {result['device']}, {result['precision']}, mm:")
    for name in ("model", "mean_pose_baseline"):
        scores = result[name]
        print(f"  {name:<19} MPJPE {scores['mpjpe']:7.1f}  PA-MPJPE {scores['pa_mpjpe']:7.1f}  PVE {scores['pve']:7.1f}")


def _eval_sequences(args: argparse.Namespace, bundle, runtime) -> None:
    import json

    from fasthmr_model.data.world import load_crop_set
    from fasthmr_model.decoder.evaluation import METHODS, evaluate_sequences, plot_trajectory
    from fasthmr_model.decoder.filters import FILTER_PARAMETERS_FILE, load_filter_parameters
    from fasthmr_model.decoder.sequences import build_sequence_split

    crops = load_crop_set(build_sequence_split(args.sequences, args.cache, bundle.body_model_path,
                                               sequences=args.sequence_count, progress=not args.json))
    filters = load_filter_parameters(args.filters or FILTER_PARAMETERS_FILE)
    result = evaluate_sequences(bundle, crops, runtime, progress=not args.json, filters=filters)
    if args.plot:
        plot_trajectory(bundle, crops, Path(args.plot), runtime=runtime, filters=filters)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{bundle.path} on the synthetic {args.sequences} sequences ({result['sequences']} sequences, "
          f"{result['frames']} frames, W = {result['window']}); mm, accel mm/frame^2:")
    for name in METHODS:
        scores = result[name]
        print(f"  {name:<23} MPJPE {scores['mpjpe']:7.1f}  PA-MPJPE {scores['pa_mpjpe']:7.1f}  PVE {scores['pve']:7.1f}"
              f"  accel {scores['accel']:6.1f}")
    latency = result["latency_ms"]
    print(f"  latency per person-frame: encoder {latency['encoder']:.2f} ms, decoder {latency['decoder']:.2f} ms "
          f"(frame pose {latency['frame_pose']:.2f} + graph {latency['decoder_graph']:.2f} + IK {latency['ik']:.2f}), "
          f"ratio {result['decoder_to_encoder_cost']:.2f}")


def _tune_filters(args: argparse.Namespace) -> None:
    from fasthmr_model.bundle import load_bundle
    from fasthmr_model.data.world import load_crop_set
    from fasthmr_model.decoder.evaluation import tune_filters, write_filter_parameters
    from fasthmr_model.decoder.filters import FILTER_PARAMETERS_FILE
    from fasthmr_model.decoder.sequences import build_sequence_split

    if args.sequences == "test":
        raise FastHMRError("the test sequences never choose anything: tune on val (or a named split of your own)")
    bundle = load_bundle(args.bundle)
    crops = load_crop_set(build_sequence_split(args.sequences, args.cache, bundle.body_model_path,
                                               sequences=args.sequence_count, progress=not args.quiet))
    # The command as run, with the bundle by folder name: the written file never records a machine's paths.
    command = " ".join(["fasthmr tune-filters --sequences", args.sequences]
                       + ([f"--bundle {Path(args.bundle).name}"] if args.bundle else [])
                       + ([f"--sequence-count {args.sequence_count}"] if args.sequence_count else []))
    parameters = tune_filters(bundle, crops, command, progress=not args.quiet)
    path = write_filter_parameters(parameters, args.out or FILTER_PARAMETERS_FILE)
    if args.plot:
        from fasthmr_model.body.lbs import BodyModel
        from fasthmr_model.decoder.evaluation import plot_filter_scores, predicted_rotmats, score
        from fasthmr_model.runtime import RuntimeConfig

        rotmats, betas = predicted_rotmats(bundle, crops, RuntimeConfig(), filters=parameters)
        body = BodyModel.from_file(bundle.body_model_path)
        decoder = {method: score(body, crops, betas, rotmats[method]) for method in ("per_frame", "causal", "offline")}
        print(f"wrote {plot_filter_scores(parameters, Path(args.plot), decoder)}")
    record = parameters.provenance
    print(f"wrote {path}: ema alpha {parameters.ema.alpha} (MPJPE {record['ema_mpjpe']}), one_euro min_cutoff "
          f"{parameters.one_euro.min_cutoff} Hz, beta {parameters.one_euro.beta} (MPJPE {record['one_euro_mpjpe']}); "
          f"per-frame {record['per_frame_mpjpe']} mm on {record['split']}")


def _figure(args: argparse.Namespace) -> None:
    from fasthmr_model.bundle import load_bundle
    from fasthmr_model.data.world import build_split, load_crop_set
    from fasthmr_model.figures import write_prediction_grid

    crops = load_crop_set(build_split(args.split, args.cache, _world_body_model(args.cache, None), frames=args.frames,
                                      progress=False))
    print(f"wrote {write_prediction_grid(load_bundle(args.bundle), crops, Path(args.out), args.count)}")


def _merge(args: argparse.Namespace) -> None:
    from fasthmr_model.bundle import load_bundle
    from fasthmr_model.data.world import build_split, load_crop_set
    from fasthmr_model.encoder.merge_plan import MergePlan, schedule_for
    from fasthmr_model.merging import merge_bundle

    crops = load_crop_set(build_split(args.calib, args.cache, _world_body_model(args.cache, None), frames=args.frames,
                                      progress=False))
    schedule = schedule_for(args.tokens, args.tokens_per_block) if args.tokens < 192 else ()
    token_plan = MergePlan(token_schedule=schedule, eclm_tensors=args.eclm_tensors)
    bundle, record = merge_bundle(load_bundle(args.bundle), Path(args.out), crops, args.tau, token_plan,
                                  args.overwrite, progress=lambda line: print(line, file=sys.stderr))
    calibration = record["calibration"]
    print(f"wrote {bundle.path}: blocks merged {record['eclm']['merged_blocks']} "
          f"({record['eclm']['blocks']} blocks), token schedule {list(schedule)}; calibration MPJPE on "
          f"{args.calib}: original {calibration['mpjpe_original_mm']:.2f} mm, merged layers "
          f"{calibration['mpjpe_layers_merged_mm']:.2f} mm, merged layers and tokens "
          f"{calibration['mpjpe_merged_mm']:.2f} mm; ONNX Runtime vs PyTorch max abs difference "
          f"{record['onnx_parity']:.2e}")


def _bench(args: argparse.Namespace) -> None:
    from fasthmr_model.bench import dumps, format_table, placement, plot, run_bench, tiny_bundles, vith_bundles
    from fasthmr_model.bundle import load_bundle
    from fasthmr_model.placement import format_placement
    from fasthmr_model.runtime import RuntimeConfig

    def progress(line: str) -> None:
        print(line, file=sys.stderr)

    runtime = RuntimeConfig(provider=args.provider, precision=args.precision, max_batch=args.batch,
                            io_binding=args.io_binding, cuda_graph=args.cuda_graph)
    result = run_bench(args.models, args.bundle, args.tau, args.batch, args.warmup, args.repeats, args.bench_cache,
                       args.cache, args.frames, runtime, progress=progress)
    if args.placement:
        for model in args.models:
            bundles = (vith_bundles(args.bench_cache, progress) if model == "hmr2-vith" else
                       tiny_bundles(load_bundle(args.bundle), args.bench_cache, args.tau, args.cache, args.frames,
                                    progress))
            result[model]["placement"] = placement(bundles["mask_tome"], runtime)
            progress(f"{model} Mask-ToMe " + format_placement(result[model]["placement"]))
    if args.plot:
        print(f"wrote {plot(result, Path(args.plot))}", file=sys.stderr)
    print(dumps(result) if args.json else format_table(result))


def build_parser(extensions=()) -> argparse.ArgumentParser:
    """The `fasthmr` parser. extensions: functions that add more subcommands to the subparsers (the ROS
    adapter adds replay, convert and demo this way: this module never imports ROS)."""
    parser = argparse.ArgumentParser(prog="fasthmr", description="FastHMR model tool")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="print a bundle's manifest")
    info.add_argument("bundle", nargs="?", help="bundle folder (default: the shipped default bundle)")
    info.set_defaults(handler=_info)

    convert = commands.add_parser("convert-hmr2", help="convert a 4D-Humans HMR2.0 checkpoint into a bundle")
    convert.add_argument("checkpoint", help="the HMR2.0 Lightning .ckpt file")
    convert.add_argument("--out", required=True, help="bundle folder to write")
    convert.add_argument("--backbone-heads", type=int, help="backbone attention heads (default: width / 80)")
    convert.add_argument("--head-heads", type=int, help="SMPL head attention heads (default: 8)")
    convert.add_argument("--body-model", help="SMPL .pkl/.npz to ship in the bundle (default: the synthetic body)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    convert.set_defaults(handler=_convert_hmr2)

    init = commands.add_parser("init-bundle", help="write a randomly initialised bundle of a preset")
    init.add_argument("--preset", default="tiny", help="encoder preset: tiny or hmr2-vith")
    init.add_argument("--seed", type=int, default=0)
    init.add_argument("--out", required=True, help="bundle folder to write")
    init.add_argument("--body-model", help="SMPL .pkl/.npz to ship in the bundle (default: the synthetic body)")
    init.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    init.set_defaults(handler=_init_bundle)

    from fasthmr_model.data.world import SPLITS, default_cache
    from fasthmr_model.providers import PRECISIONS
    from fasthmr_model.runtime import PROVIDER_CHOICES

    world = commands.add_parser("world", help="the synthetic world's fixed splits").add_subparsers(
        dest="world_command", required=True)
    build = world.add_parser("build", help="render and cache splits (skips those already built)")
    build.add_argument("--split", nargs="+", choices=sorted(SPLITS), default=["val", "test"])
    build.add_argument("--cache", type=Path, default=default_cache(), help="cache folder (default: %(default)s)")
    build.add_argument("--frames", type=int, help="only the first N frames of each split (smoke runs)")
    build.add_argument("--workers", type=int, default=2)
    build.add_argument("--body-model", help="SMPL .pkl/.npz to pose instead of the synthetic body")
    build.set_defaults(handler=_world_build)
    sequences = world.add_parser("sequences", help="render and cache the decoder's video sequences (skips built ones)")
    sequences.add_argument("--split", nargs="+", default=["val", "test"],
                           help="built-in splits (train, val, test), or with --seed one new split's plain name")
    sequences.add_argument("--seed", type=int, help="render a named split from this seed (with --count)")
    sequences.add_argument("--cache", type=Path, default=default_cache(), help="cache folder (default: %(default)s)")
    sequences.add_argument("--count", "--sequences", dest="sequences", type=int,
                           help="a named split's sequences; of a built-in split, only the first N (smoke runs)")
    sequences.add_argument("--frames", type=int,
                           help="a named split's frames per sequence (default 150); of a built-in split, only the "
                                "first N of each sequence (smoke runs)")
    sequences.add_argument("--workers", type=int, default=2)
    sequences.add_argument("--body-model", help="SMPL .pkl/.npz to pose instead of the synthetic body")
    sequences.set_defaults(handler=_world_sequences)

    # Training flags take their defaults from the configs and recipes (train.recipes), and each flag's dest
    # is the config field it sets (_training_config).
    from fasthmr_model.train.recipes import DENOISER_RECIPE, VAE_RECIPE, EncoderTrainingConfig, TrainingConfig

    encoder_defaults = EncoderTrainingConfig()
    train = commands.add_parser("train", help="training runs").add_subparsers(dest="train_command", required=True)
    encoder = train.add_parser("encoder", help="train the tiny encoder on the synthetic train split (CPU or GPU)")
    encoder.add_argument("--run", required=True, help="run folder: checkpoint and loss log; resumes if present")
    encoder.add_argument("--out", required=True, help="bundle folder to write at the end")
    encoder.add_argument("--steps", type=int, default=encoder_defaults.steps, help="(default: %(default)s)")
    encoder.add_argument("--batch-size", type=int, default=encoder_defaults.batch_size, help="(default: %(default)s)")
    encoder.add_argument("--learning-rate", type=float, default=encoder_defaults.learning_rate,
                         help="(default: %(default)s)")
    encoder.add_argument("--warmup-steps", type=int, default=encoder_defaults.warmup_steps,
                         help="linear warm-up before the cosine decay (default: %(default)s)")
    encoder.add_argument("--seed", type=int, default=encoder_defaults.seed)
    encoder.add_argument("--device", default=encoder_defaults.device, help="torch device: cpu (default) or cuda")
    encoder.add_argument("--cache", type=Path, default=default_cache())
    encoder.add_argument("--frames", type=int, help="only the first N frames of the train split (smoke runs)")
    encoder.add_argument("--body-model", help="SMPL .pkl/.npz instead of the synthetic body")
    encoder.add_argument("--quiet", action="store_true", help="no progress bar")
    encoder.set_defaults(handler=_train_encoder)

    def decoder_training(parser: argparse.ArgumentParser, recipe: TrainingConfig) -> argparse.ArgumentParser:
        parser.add_argument("--run", required=True, help="run folder: checkpoint and loss log; resumes if present")
        parser.add_argument("--steps", type=int, default=recipe.steps, help="(default: %(default)s)")
        parser.add_argument("--batch-size", type=int, default=recipe.batch_size, help="(default: %(default)s)")
        parser.add_argument("--learning-rate", type=float, default=recipe.learning_rate, help="(default: %(default)s)")
        parser.add_argument("--seed", type=int, default=recipe.seed)
        parser.add_argument("--threads", type=int, default=recipe.threads, help="torch threads (0 = torch's default)")
        parser.add_argument("--device", choices=("cpu", "cuda"), default=recipe.device)
        parser.add_argument("--cache", type=Path, default=default_cache())
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
        return parser

    vae = decoder_training(train.add_parser("vae", help="train the decoder's motion VAE on generated motions"),
                           VAE_RECIPE)
    vae.add_argument("--window", type=int, default=8, help="frames per window W")
    vae.add_argument("--latent-tokens", type=int, default=8, help="latent tokens L")
    vae.add_argument("--latent-size", type=int, default=32, help="numbers per latent token C")
    vae.add_argument("--layers", type=int, default=1,
                     help="layers of the VAE's encoder and decoder, odd; the denoiser, which starts as the VAE's "
                          "encoder, gets as many")
    vae.add_argument("--sequences", dest="motion_sequences", type=int, default=VAE_RECIPE.motion_sequences,
                     help="generated motion sequences (default: %(default)s)")
    vae.add_argument("--amass", nargs="*", default=(), help="AMASS-format .npz files to train on as well")
    vae.add_argument("--body-model", help="SMPL .pkl/.npz instead of the synthetic body")
    vae.add_argument("--bundle", help="the encoder bundle whose errors on the rendered training sequences shape the "
                                      "VAE's windows (default: the shipped default bundle)")
    vae.add_argument("--jitter-scale", type=float, default=VAE_RECIPE.jitter_scale,
                     help="the per-frame jitter put on the VAE's input windows, in units of the encoder's measured "
                          "one (default: %(default)s)")
    vae.add_argument("--plain", action="store_true",
                     help="train on the motions as they are, not read as an encoder's poses")
    vae.set_defaults(handler=_train_vae)

    decoder = decoder_training(train.add_parser(
        "decoder", help="train the latent denoiser on a bundle's features of the rendered sequences; "
                        "write the bundle with its decoder"), DENOISER_RECIPE)
    decoder.add_argument("--vae-run", required=True, help="the VAE's run folder (`fasthmr train vae`)")
    decoder.add_argument("--bundle", help="the encoder bundle whose features condition the decoder "
                                          "(default: the shipped default bundle)")
    decoder.add_argument("--out", required=True, help="bundle folder to write: the encoder bundle plus the decoder")
    decoder.add_argument("--sequences", nargs="+", default=["train"], metavar="NAME",
                         help="sequence splits to train on: train (default) and named splits rendered with "
                              "`fasthmr world sequences --split NAME --seed S --count N`")
    decoder.add_argument("--sequence-count", type=int,
                         help="only the first N sequences of those splits (the data-size curve)")
    decoder.set_defaults(handler=_train_decoder)

    def bundle_on_split(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--bundle", help="bundle folder (default: the shipped default bundle)")
        parser.add_argument("--split", choices=sorted(SPLITS), default="test")
        parser.add_argument("--cache", type=Path, default=default_cache(), help="split cache (default: %(default)s)")
        parser.add_argument("--frames", type=int, help="only the first N frames of the split (smoke runs)")
        return parser

    evaluation = bundle_on_split(commands.add_parser(
        "eval", help="MPJPE, PA-MPJPE, PVE on a synthetic split, with the mean-pose baseline"))
    evaluation.add_argument("--json", action="store_true", help="one JSON object on stdout")
    evaluation.add_argument("--sequences", metavar="NAME",
                            help="score the decoder instead: per-frame, causal, offline, the tuned filters and the "
                                 "decoder without features on rendered sequences (val, test or a named split)")
    evaluation.add_argument("--filters", type=Path, help="with --sequences: filter parameters JSON (default: those "
                                                         "tuned on val, shipped in the package)")
    evaluation.add_argument("--sequence-count", type=int, help="only the first N sequences (smoke runs)")
    evaluation.add_argument("--plot", help="with --sequences: PNG of one joint's trajectory to write")
    evaluation.add_argument("--provider", default="cpu", choices=PROVIDER_CHOICES,
                            help="the encoder's (default: %(default)s); with --sequences it runs the latency, the "
                                 "scores read the encoder's features cached from the CPU")
    evaluation.add_argument("--precision", default="fp32", choices=PRECISIONS, help="(default: %(default)s)")
    evaluation.add_argument("--threads", type=int, default=0,
                            help="ONNX Runtime intra-op threads of every session (0 = its choice)")
    evaluation.set_defaults(handler=_eval)

    tune = commands.add_parser("tune-filters", help="choose the ema and One-Euro filters' parameters on val "
                                                    "sequences (the baselines of `fasthmr eval --sequences`)")
    tune.add_argument("--bundle", help="bundle whose encoder poses are filtered (default: the shipped one)")
    tune.add_argument("--sequences", default="val", metavar="NAME", help="sequence split to tune on (default: val)")
    tune.add_argument("--sequence-count", type=int, help="only the first N sequences (smoke runs)")
    tune.add_argument("--cache", type=Path, default=default_cache(), help="split cache (default: %(default)s)")
    tune.add_argument("--out", type=Path, help="JSON file to write (default: the package's, which eval reads)")
    tune.add_argument("--plot", help="PNG of every filter's MPJPE against acceleration error, with the decoder's")
    tune.add_argument("--quiet", action="store_true", help="no progress bar")
    tune.set_defaults(handler=_tune_filters)

    figure = bundle_on_split(commands.add_parser(
        "figure", help="a grid of split crops with the predicted mesh drawn over them"))
    figure.add_argument("--count", type=int, default=16)
    figure.add_argument("--out", required=True, help="PNG file to write")
    figure.set_defaults(handler=_figure)

    merge = commands.add_parser("merge", help="ECLM (calibrated on a split) + Mask-ToMe: write a merged bundle")
    merge.add_argument("--bundle", help="unmerged bundle folder (default: the shipped default bundle)")
    merge.add_argument("--tau", type=float, required=True, help="allowed calibration MPJPE increase, mm")
    merge.add_argument("--calib", choices=["val", "train"], default="val", help="calibration split")
    merge.add_argument("--out", required=True, help="bundle folder to write")
    merge.add_argument("--tokens", type=int, default=90, help="tokens left after Mask-ToMe (192: no token merging)")
    merge.add_argument("--tokens-per-block", type=int, default=40, help="tokens merged per block until --tokens")
    merge.add_argument("--eclm-tensors", choices=["all", "linear"], default="all",
                       help="merge every block tensor, or only attention and MLP weights (norms from the first)")
    merge.add_argument("--cache", type=Path, default=default_cache(), help="split cache (default: %(default)s)")
    merge.add_argument("--frames", type=int, help="only the first N frames of the split (smoke runs)")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    merge.set_defaults(handler=_merge)

    from fasthmr_model.bench import DEFAULT_TAU_MM, default_bench_cache

    bench = commands.add_parser("bench", help="base / ECLM / Mask-ToMe / both side by side in ONNX Runtime")
    bench.add_argument("--models", nargs="+", choices=["hmr2-vith", "tiny"], default=["hmr2-vith", "tiny"])
    bench.add_argument("--bundle", help="the tiny bundle to merge and score (default: the shipped default bundle)")
    bench.add_argument("--tau", type=float, default=DEFAULT_TAU_MM, help="ECLM tau for the tiny variants, mm")
    bench.add_argument("--batch", type=int, default=4, help="images per call for the throughput (latency: 1)")
    bench.add_argument("--warmup", type=int, default=2)
    bench.add_argument("--repeats", type=int, default=5, help="timed rounds (the median is reported)")
    bench.add_argument("--provider", default="cpu", choices=PROVIDER_CHOICES,
                       help="onnxruntime provider (default: %(default)s); one not obtained stops the bench")
    bench.add_argument("--precision", default="fp32", choices=PRECISIONS, help="(default: %(default)s)")
    bench.add_argument("--io-binding", action="store_true", help="inputs and outputs bound once per batch size")
    bench.add_argument("--cuda-graph", action="store_true", help="CUDA provider: replay captured CUDA graphs")
    bench.add_argument("--placement", action="store_true",
                       help="also report which provider runs which nodes of the Mask-ToMe graph")
    bench.add_argument("--bench-cache", type=Path, default=default_bench_cache(),
                       help="exported variants (default: %(default)s)")
    bench.add_argument("--cache", type=Path, default=default_cache(), help="split cache (default: %(default)s)")
    bench.add_argument("--frames", type=int, help="only the first N frames of the splits (smoke runs)")
    bench.add_argument("--json", action="store_true", help="one JSON object on stdout")
    bench.add_argument("--plot", help="PNG file: throughput vs MPJPE (and the hmr2-vith speed-ups)")
    bench.set_defaults(handler=_bench)

    for extend in extensions:
        extend(commands)
    return parser


def main(argv: list[str] | None = None, extensions=()) -> int:
    args = build_parser(extensions).parse_args(argv)
    try:
        args.handler(args)
    except FastHMRError as error:
        print(f"fasthmr {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
