"""Design property: a sampling run is one lax.scan, with no loop or branch elsewhere.

A ``while``/``cond`` (or a second scan) in the compiled run costs a host round trip per
iteration on GPU (diffusers' schedulers call ``.item()`` every step; we must not).
"""

import jax
import jax.numpy as jnp
import pytest

from jaxdiff.samplers.config import SamplingMethod, method_class
from jaxdiff.samplers.driver import sample
from jaxdiff.schedules.discrete import DiscreteSchedule

SCHED = DiscreteSchedule.create("scaled_linear", beta_start=0.00085, beta_end=0.012)


def _primitives(jaxpr, out):
    for eqn in jaxpr.eqns:
        out.append(eqn.primitive.name)
        for param in eqn.params.values():
            for sub in param if isinstance(param, list | tuple) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    _primitives(inner, out)
    return out


def _model(x, t, context):
    return x * (t[:, None] / 1000.0)


KARRAS = [
    SamplingMethod.DPM_SOLVER,
    SamplingMethod.EULER,
    SamplingMethod.EULER_ANCESTRAL,
    SamplingMethod.HEUN,
]
CASES = [(m, False) for m in SamplingMethod] + [(m, True) for m in KARRAS]


@pytest.mark.parametrize("method, karras", CASES, ids=lambda v: getattr(v, "value", str(v)))
def test_run_is_one_scan(method, karras):
    kwargs = {"use_karras_sigmas": True} if karras else {}
    m = method_class(method)(num_inference_steps=12, **kwargs)
    jaxpr = jax.make_jaxpr(
        lambda key, x: (
            sample(key, m, SCHED, _model, x, context=jnp.ones((3, 2)), guidance_scale=3.0).samples
        )
    )(jax.random.key(0), jnp.ones((3, 2)))
    prims = _primitives(jaxpr.jaxpr, [])
    assert prims.count("scan") == 1, prims
    assert not {"while", "cond"} & set(prims), sorted(set(prims))
