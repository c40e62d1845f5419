"""The ``jaxdiff`` command: ``demo``, ``selftest``, ``train``, ``counting``, ``convert``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxdiff", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="sample a 2-D Gaussian mixture with several samplers")
    demo.add_argument("--out", default="jaxdiff_demo.png", help="PNG file to write")
    demo.add_argument("--num-samples", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=0)
    sub.add_parser("selftest", help="quick installation check")
    from jaxdiff.cli import train

    train.add_parser(sub)
    from jaxdiff.cli import counting

    counting.add_parser(sub)
    from jaxdiff.cli import convert

    convert.add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = _build_parser().parse_args(argv)
    if args.command == "demo":
        from jaxdiff.cli.demo import run_demo

        run_demo(out=args.out, num_samples=args.num_samples, seed=args.seed)
        return 0
    if args.command == "convert":
        from jaxdiff.cli import convert

        return convert.run(args)
    if args.command == "train":
        from jaxdiff.cli import train

        return train.run(args)
    if args.command == "counting":
        from jaxdiff.cli import counting

        return counting.run(args)
    from jaxdiff.cli.selftest import run_selftest

    return 0 if run_selftest() else 1


if __name__ == "__main__":
    sys.exit(main())
