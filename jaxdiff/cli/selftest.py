"""``jaxdiff selftest``: a quick installation check touching every subsystem once.

One tiny check per subsystem (:data:`jaxdiff.cli.selftest_checks.CHECKS`), each against a
known answer:

1. schedules: every named discrete schedule builds, ``alphas_cumprod`` in (0, 1], decreasing;
2. samplers: DDIM, DPM-Solver, Euler and Heun with the exact denoiser of a 1-D Gaussian
   reach its mean and standard deviation;
3. ot: Sinkhorn between two 1-D point sets at small epsilon satisfies the marginals and
   costs what the sorted matching costs;
4. kernels: the Pallas ``lse_dot`` kernel (interpret mode) matches its jnp reference;
5. networks: a tiny UNet's forward pass has the input's shape and is finite;
6. interop: the UNet's parameters survive a diffusers state-dict round trip bitwise;
7. training: ``fit`` runs a few steps with finite losses;
8. checkpoint: ``fit`` with a run directory saves, and a second call resumes with equal
   parameters;
9. counting: a Skellam bridge's marginal mean matches the closed form and reverse
   sampling with the exact model is healthy.

A check that raises is reported as ``[FAIL] name: Type: message`` and the next check
runs; passing checks print ``[ok] name (seconds): detail``.
"""

from __future__ import annotations

import time

import jax

from jaxdiff.cli import selftest_checks

__all__ = ["run_selftest"]


def run_selftest() -> bool:
    """Run every check, print one line each and a summary; True when all pass."""
    print(
        f"jax {jax.__version__} on {jax.default_backend()} ({len(jax.devices())} device(s))",
        flush=True,
    )
    start = time.perf_counter()
    failed = []
    for name, check in selftest_checks.CHECKS:
        t0 = time.perf_counter()
        try:
            detail = check()
        except Exception as err:  # a check's failure must not stop the others
            failed.append(name)
            print(f"[FAIL] {name}: {type(err).__name__}: {err}", flush=True)
        else:
            print(f"[ok] {name} ({time.perf_counter() - t0:.1f}s): {detail}", flush=True)
    total = len(selftest_checks.CHECKS)
    passed = total - len(failed)
    elapsed = f"{time.perf_counter() - start:.1f} s"
    if failed:
        print(
            f"selftest FAILED: {passed}/{total} checks passed in {elapsed}; "
            f"failed: {', '.join(failed)}",
            flush=True,
        )
    else:
        print(f"selftest: {passed}/{total} checks passed in {elapsed}", flush=True)
    return not failed
