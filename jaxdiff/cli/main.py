"""The ``jaxdiff`` command: ``demo``, ``selftest``, ``train``, ``counting``, ``style``, ``convert``.

Building the parser imports no JAX (``--help`` and ``--version`` answer at once); each
subcommand imports what it needs when it runs. Errors from bad input print one line
and exit 2 (:func:`jaxdiff.cli.console.run_guarded`); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]

_DESCRIPTION = """jaxdiff: diffusion sampling, optimal transport and flow matching in JAX.

Commands: demo (samplers on a 2-D mixture, writes a picture), selftest (a quick
check of every subsystem), train (a DDPM on digits), counting (Counting Flows on
count data), style (OT-CFM style transfer: train, transfer, preprocess), convert
(diffusers weights <-> jaxdiff checkpoints).
Run `jaxdiff <command> --help` for a command's options and config keys."""


def _with_debug(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def _hydra_common() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--config-name", "-cn", default="config", help="primary config (see the list below)"
    )
    parent.add_argument(
        "--cfg",
        choices=["job", "all"],
        help="print the composed config as YAML and exit (all = job: no Hydra runtime)",
    )
    parent.add_argument(
        "--info", action="store_true", help="print config folder, groups and run directory"
    )
    return parent


def _build_parser() -> argparse.ArgumentParser:
    from jaxdiff import __version__
    from jaxdiff.cli import convert, counting, style, train

    parser = argparse.ArgumentParser(
        prog="jaxdiff",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jaxdiff {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    demo = sub.add_parser(
        "demo",
        help="sample a 2-D Gaussian mixture with several samplers; writes a PNG",
        description="Sample an 8-component 2-D Gaussian ring with six samplers and the exact "
        "denoiser; print model calls, time and energy distance; write a scatter plot.",
    )
    _with_debug(demo)
    demo.add_argument("--out", default="jaxdiff_demo.png", help="PNG file to write")
    demo.add_argument("--num-samples", type=int, default=2000, help="points per method")
    demo.add_argument("--seed", type=int, default=0, help="PRNG seed (>= 0)")
    _with_debug(sub.add_parser("selftest", help="quick check of every subsystem"))
    hydra = _hydra_common()
    _with_debug(train.add_parser(sub, parents=[hydra]))
    _with_debug(counting.add_parser(sub, parents=[hydra]))
    style.add_parser(sub, parents=[hydra])  # --debug on each of its actions
    _with_debug(convert.add_parser(sub))
    return parser


def _dispatch(args) -> int:
    if args.command == "demo":
        from jaxdiff.cli.demo import run_demo

        run_demo(out=args.out, num_samples=args.num_samples, seed=args.seed)
        return 0
    if args.command == "selftest":
        from jaxdiff.cli.selftest import run_selftest

        return 0 if run_selftest() else 1
    from jaxdiff.cli import convert, counting, style, train

    apps = {"convert": convert, "train": train, "counting": counting, "style": style}
    return apps[args.command].run(args)


def main(argv=None) -> int:
    """Entry point of the console script; returns the process exit code."""
    from jaxdiff.cli.console import run_guarded

    args = _build_parser().parse_args(argv)
    return run_guarded(args.command, lambda: _dispatch(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
