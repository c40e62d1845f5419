"""The one driver of the Hydra apps (``train``, ``counting``, and those to come).

Every app supplies three functions -- ``compose(overrides, config_name) -> cfg``,
``prepare(cfg) -> job`` (builds every library object, raises ``ConfigError``) and
``execute(cfg, job, log) -> {"run_dir", "metrics"}`` -- and :func:`run_app` runs them in
the order the command line promises: a first line at once, the whole config checked
before any work, ``--cfg`` / ``--info`` answered without work, phase lines while working,
the metrics and the files written at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from jaxdiff.cli.config import show_config
from jaxdiff.cli.console import Console

__all__ = ["run_app"]


def run_app(
    app: str,
    args,
    *,
    compose: Callable,
    prepare: Callable,
    execute: Callable,
    files: Sequence[str],
) -> int:
    """Run one Hydra app for parsed ``args``; returns the exit code.

    Args:
      app: the subcommand name (``"train"``).
      args: argparse namespace with ``overrides``, ``config_name``, ``cfg``, ``info``.
      compose: ``compose(overrides, config_name) -> cfg`` (plain dict).
      prepare: ``prepare(cfg) -> job`` with ``job["run_dir"]``; raises ConfigError.
      execute: ``execute(cfg, job, log=...) -> {"run_dir", "metrics"}``.
      files: the names ``execute`` writes into the run directory (for the last line).
    """
    console = Console()
    console(
        f"jaxdiff {app}: checking the config ({args.config_name} + {len(args.overrides)} overrides)"
    )
    cfg = compose(args.overrides, args.config_name)
    job = prepare(cfg)
    if args.cfg or args.info:
        return show_config(app, cfg, args, job["run_dir"])
    result = execute(cfg, job, log=console)
    print(json.dumps(result["metrics"], indent=2), flush=True)
    console(f"wrote {result['run_dir']}/{{{', '.join(files)}}}")
    return 0
