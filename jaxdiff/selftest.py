"""``python -m jaxdiff.selftest``: the installation check, FastSB-OT's self-check included.

Runs :func:`jaxdiff.cli.selftest.run_selftest` (one check per subsystem, the same as
``jaxdiff selftest``) and then FastSB-OT's :func:`~jaxdiff.schrodinger.fastsb_check.
run_self_check` (Sinkhorn marginals, the closed-form Gaussian plan, Fisher against
float64, plan symmetry), printing one line per check. The exit status is 0 when every
check passed, 1 otherwise (the seed README's ``python -m fastsb_ot.selftest``).
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> int:
    """Run both check sets; return the exit status (0: all passed, 1: something failed)."""
    import jax

    from jaxdiff.cli.selftest import run_selftest
    from jaxdiff.schrodinger.fastsb_check import run_self_check

    library_ok = run_selftest()
    report = run_self_check(jax.random.key(0))
    print(report, flush=True)
    verdict = "passed" if report.passed else "FAILED"
    print(
        f"FastSB-OT self-check {verdict}: {sum(i.passed for i in report.items)}/"
        f"{len(report.items)} checks",
        flush=True,
    )
    return 0 if library_ok and report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
