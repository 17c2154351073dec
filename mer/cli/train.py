"""``python -m mer train``: train (or resume) chapter 2's ViT from the command line.

Argument parsing and terminal output only; the training is :func:`mer.vit.train`.

Notebook: book/reproducing.md shows the command.
"""

from __future__ import annotations

import argparse
import logging

from .. import cli, profiles, spectrogram, vit
from ..data import load_dataset, synth_options


def main(argv: list[str] | None = None) -> int:
    """``python -m mer train [--profile NAME] [--dataset synth] [--epochs N] ... [--debug]``.

    Trains (or resumes) the ViT, evaluates it on the test split and prints
    the metrics and the checkpoint folder. A bad number is refused as
    argparse refuses a bad choice (status 2); any other error is one line on
    stderr (status 1; ``--debug`` adds the traceback).
    """
    parser = argparse.ArgumentParser(prog="python -m mer train", description="Train the chapter 2 ViT.")
    parser.add_argument("--profile", default="default", choices=sorted(profiles.PROFILES))
    for name, kind in (("dataset", str), ("data-dir", str), ("n-clips", cli.non_negative_int), ("soundfont", str),
                       ("seed", cli.non_negative_int), ("epochs", cli.positive_int),
                       ("batch-size", cli.positive_int), ("learning-rate", cli.positive_float),
                       ("time-budget-s", cli.non_negative_float), ("pretrained", str),
                       ("pretrain-epochs", cli.non_negative_int), ("valence-weight", cli.non_negative_float),
                       ("out-dir", str), ("transpose-augment", cli.non_negative_int)):
        parser.add_argument(f"--{name}", type=kind, default=None)
    parser.add_argument("--model-size", choices=sorted(vit.SIZES), default=None)
    parser.add_argument("--front-end", choices=spectrogram.FRONT_ENDS, default=None)
    parser.add_argument("--canonicalise", choices=(*vit.CANONICALISE, "none"), default=None,
                        help="tonic: move each clip to its estimated tonic first (none: off)")
    parser.add_argument("--input-channels", choices=sorted(vit.INPUT_CHANNELS), default=None,
                        help="onsets: the patch embedding also sees where each bin's energy rises and falls")
    parser.add_argument("--writing", choices=("classic", "tonal"), default=None,
                        help="the synthetic set's composer (tonal: every key, textures, three SoundFonts; "
                             "classic: every clip in C, block chords)")
    parser.add_argument("--no-resume", dest="resume", action="store_false")
    parser.add_argument("-q", "--quiet", action="store_true")
    cli.add_debug(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", datefmt="%H:%M:%S")
    params = profiles.get(args.profile)
    for key, value in vars(args).items():
        if value is not None and key not in ("profile", "resume", "quiet", "debug"):
            params[key] = value

    def run() -> int:
        name = params.get("dataset", "synth")
        options = synth_options(name, n_clips=int(params.get("n_clips") or 0), writing=params.get("writing", "tonal"),
                                soundfont=params.get("soundfont") or "", seed=int(params.get("seed", 0)))
        accelerator = vit.accelerator()
        with accelerator.main_process_first():  # under accelerate launch: render or read the data once
            dataset = load_dataset(name, params.get("data_dir") or None, **options)
        canonicalise = params.get("canonicalise")
        options = vit.chapter_options(
            size=params.get("model_size", "default"), epochs=params.get("epochs", 20),
            batch_size=params.get("batch_size", 32), learning_rate=params.get("learning_rate", 3e-4),
            seed=params.get("seed", 0), time_budget_s=params.get("time_budget_s"), pretrained=params.get("pretrained"),
            pretrain_epochs=params.get("pretrain_epochs", 0), valence_weight=params.get("valence_weight", 0.0),
            front_end=params.get("front_end") or "mel", transpose_augment=int(params.get("transpose_augment") or 0),
            canonicalise=None if canonicalise == "none" else canonicalise,
            input_channels=params.get("input_channels") or "spectrogram")
        result = vit.train(dataset, options, out_dir=params.get("out_dir"), resume=args.resume,
                           progress=not args.quiet)
        if not accelerator.is_main_process:
            return 0  # the main process evaluates and writes the predictions
        evaluation = vit.evaluate(result, dataset, seed=int(params.get("seed", 0)), progress=not args.quiet)
        print(evaluation.metrics.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        print(f"checkpoint: {result.checkpoint}")
        print(f"predictions: {evaluation.path}")
        return 0

    return cli.guarded("python -m mer train", run, debug=args.debug,
                       interrupted="interrupted; run the same command again to resume")
