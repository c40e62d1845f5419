"""``jaxdiff selftest``: a quick installation check.

Builds every schedule, samples Gaussian data with the exact denoiser through the
facade and checks the sample mean and standard deviation; prints one line per check
and returns whether all passed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.data.gaussian_mixture import GaussianMixture
from jaxdiff.samplers.config import SamplingMethod
from jaxdiff.samplers.manager import create_sampler
from jaxdiff.schedules.config import NoiseScheduleType, create_noise_scheduler

__all__ = ["run_selftest"]

# first-order methods need more steps to reach the data moments
_STEPS = {
    SamplingMethod.DDPM: 300,
    SamplingMethod.DDIM: 100,
    SamplingMethod.EULER: 100,
    SamplingMethod.EULER_ANCESTRAL: 300,
}


def run_selftest() -> bool:
    """Run the checks; return True when all pass."""
    print(f"jax {jax.__version__} on {jax.default_backend()} ({len(jax.devices())} device(s))")
    ok = True
    for kind in NoiseScheduleType:
        if kind in (NoiseScheduleType.CUSTOM, NoiseScheduleType.FLOW):
            continue
        info = create_noise_scheduler(kind).get_schedule_info()
        good = 0 < info["alphas_cumprod_range"][0] < info["alphas_cumprod_range"][1] <= 1
        ok &= _report(f"schedule {kind.value}", good)
    data = GaussianMixture(weights=jnp.ones(1), means=jnp.full((1, 2), 0.7), stds=jnp.full(1, 0.5))
    latents = jax.random.normal(jax.random.key(0), (2000, 2))
    for method in SamplingMethod:
        steps = _STEPS.get(method, 30)
        sampler = create_sampler(
            "linear", method, num_inference_steps=steps, timestep_spacing="trailing"
        )
        model = data.epsilon_model(sampler.scheduler.alphas_cumprod)
        res = sampler.sample(model, latents, key=jax.random.key(1))
        x = np.asarray(res.samples)
        good = abs(x.mean() - 0.7) < 0.05 and abs(x.std() - 0.5) < 0.05 and res.all_finite
        ok &= _report(
            f"sampler {method.value}: mean {x.mean():.3f} std {x.std():.3f} "
            f"(want 0.700 0.500), NFE {res.num_function_evals}",
            good,
        )
    print("selftest passed" if ok else "selftest FAILED")
    return ok


def _report(label: str, good: bool) -> bool:
    print(f"[{'ok' if good else 'FAIL'}] {label}")
    return good
