"""``BridgeMethod``: the base steps against the exact probability-flow map, the OT pull
against a biased score, the per-step health, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.samplers import ProbabilityFlow, sample
from jaxdiff.schedules.continuous import make_schedule
from jaxdiff.schrodinger.fisher import KineticLangevin
from jaxdiff.schrodinger.method import BridgeMethod
from jaxdiff.schrodinger.ot_correction import OTCorrection
from tests.schrodinger.gaussian import gaussian_eps_model, pf_map

MU, C = 0.5, 0.3
COSINE = make_schedule("cosine")
LINEAR = make_schedule("linear")
NOISE = jax.random.normal(jax.random.key(1), (4000, 1))


def _map_error(schedule, method, noise=NOISE):
    out = sample(jax.random.key(0), method, schedule, gaussian_eps_model(schedule, MU, C), noise)
    want = pf_map(schedule, MU, C, noise * schedule.prior_std, method.t_min)
    return float(jnp.sqrt(jnp.mean((out.samples - want) ** 2))), out


@pytest.mark.parametrize("schedule", [COSINE, LINEAR], ids=["cosine", "linear"])
def test_deterministic_bases_converge_to_the_exact_map(schedule):
    # per-sample error to the exact PF-ODE map; Heun second order, Euler and DDIM first
    # order or better; the seed's own setting (std 0.3, cosine, 50 steps) lands at 0.3
    errors = {}
    for base in ("heun", "euler", "ddim"):
        errors[base] = [
            _map_error(schedule, BridgeMethod(num_steps=n, base=base))[0] for n in (25, 50)
        ]
        assert errors[base][1] < errors[base][0], (base, errors[base])
    assert errors["heun"][0] / errors["heun"][1] > 3.0, errors  # ~4 for second order
    for first_order in ("euler", "ddim"):  # ~2 for first order
        assert errors[first_order][0] / errors[first_order][1] > 1.6, errors
    assert errors["heun"][1] < 2e-3 and errors["ddim"][1] < 3e-2, errors
    out = sample(
        jax.random.key(0),
        BridgeMethod(num_steps=50, base="heun"),
        COSINE,
        gaussian_eps_model(COSINE, 0.0, 0.3),
        NOISE,
    )
    assert abs(float(out.samples.std()) - 0.3) < 0.01  # the original: 1.215


@pytest.mark.parametrize("base, kwargs", [("heun", {}), ("euler", {})])
def test_heun_and_euler_bases_equal_probability_flow(base, kwargs):
    model = gaussian_eps_model(COSINE, MU, C)
    a = sample(jax.random.key(0), BridgeMethod(num_steps=20, base=base), COSINE, model, NOISE)
    b = sample(jax.random.key(0), ProbabilityFlow(num_steps=20, solver=base), COSINE, model, NOISE)
    np.testing.assert_allclose(a.samples, b.samples, rtol=1e-6, atol=1e-6)
    assert a.nfe == b.nfe


@pytest.mark.parametrize("base, eta", [("euler_maruyama", 0.0), ("ddim", 1.0), ("ddim", 0.5)])
def test_stochastic_bases_reach_the_data_law(base, eta):
    _, out = _map_error(COSINE, BridgeMethod(num_steps=200, base=base, eta=eta))
    x = np.asarray(out.samples)
    # 4000 samples: standard errors ~0.005 (mean) and ~0.0034 (std)
    assert abs(x.mean() - MU) < 0.02 and abs(x.std() - C) < 0.015, (x.mean(), x.std())


def test_state_stays_float32_for_bfloat16_latents():
    noise = NOISE.astype(jnp.bfloat16)
    out = sample(
        jax.random.key(0),
        BridgeMethod(num_steps=25),
        COSINE,
        gaussian_eps_model(COSINE, MU, C),
        noise,
    )
    assert out.samples.dtype == jnp.bfloat16
    want = pf_map(COSINE, MU, C, noise.astype(jnp.float32), 1e-3)
    # one bf16 rounding of the result, not 50 steps of bf16 accumulation
    assert float(jnp.max(jnp.abs(out.samples.astype(jnp.float32) - want))) < 1e-2


def test_ot_pull_corrects_a_biased_score_and_reports_health():
    # the model believes the data have std 0.6; the reference samples are the true law
    # (std 0.3): the OT pull toward y_t brings the samples back, without it they stay off
    biased = gaussian_eps_model(COSINE, MU, 0.6)
    reference = MU + C * jax.random.normal(jax.random.key(7), (2000, 1))
    noise = NOISE[:1000]
    plain = BridgeMethod(num_steps=20)
    pulled = BridgeMethod(
        num_steps=20, ot=OTCorrection(epsilon=0.01, weight=0.5), reference=reference
    )
    x_plain = sample(jax.random.key(0), plain, COSINE, biased, noise)
    out = sample(jax.random.key(0), pulled, COSINE, biased, noise)
    assert abs(float(x_plain.samples.std()) - 0.6) < 0.05
    assert abs(float(out.samples.std()) - C) < abs(float(x_plain.samples.std()) - C) / 3
    assert out.nfe == x_plain.nfe == 40  # the OT pull costs no model call
    assert out.state["ot_converged"].shape == (20,) and bool(out.state["ot_converged"].all())
    assert float(out.state["ot_epsilon"].min()) > 0
    # without reference samples the correction is off: the plain result exactly
    off = BridgeMethod(num_steps=20, ot=OTCorrection(epsilon=0.01, weight=0.5))
    np.testing.assert_array_equal(
        sample(jax.random.key(0), off, COSINE, biased, noise).samples, x_plain.samples
    )


def test_fisher_langevin_rows_keep_the_law_and_repair_coarse_steps():
    # exact scores: corrector rows at t_{i+1} leave p_t invariant, so the law stays right;
    # at 5 coarse Euler steps (std 0.257, measured) three rows per step bring it back
    model = gaussian_eps_model(COSINE, MU, C)
    noise = jax.random.normal(jax.random.key(1), (4000, 2))

    def stats(num_steps, rows):
        langevin = None if rows == 0 else KineticLangevin(n_steps=rows)
        method = BridgeMethod(num_steps=num_steps, base="euler", langevin=langevin)
        out = sample(jax.random.key(0), method, COSINE, model, noise)
        assert out.nfe == num_steps * (1 + rows)
        return float(out.samples.mean()), float(out.samples.std())

    mean, std = stats(40, 1)
    assert abs(mean - MU) < 0.015 and abs(std - C) < 0.01, (mean, std)
    coarse, repaired = stats(5, 0)[1], stats(5, 3)[1]
    assert abs(repaired - C) < abs(coarse - C) / 4, (coarse, repaired)


def test_a_given_time_grid():
    model = gaussian_eps_model(COSINE, MU, C)
    # the seed's grid works; a final 0 is taken as t_min (the score is finite there)
    seed = BridgeMethod(timesteps=[1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
    out = sample(jax.random.key(0), seed, COSINE, model, NOISE)
    assert out.nfe == 10 and bool(jnp.isfinite(out.samples).all())
    # the uniform grid given explicitly is the default grid
    grid = np.linspace(1.0, 1e-3, 21, dtype=np.float32).tolist()
    a = sample(jax.random.key(0), BridgeMethod(timesteps=grid), COSINE, model, NOISE)
    b = sample(jax.random.key(0), BridgeMethod(num_steps=20), COSINE, model, NOISE)
    np.testing.assert_allclose(a.samples, b.samples, atol=1e-5)


@pytest.mark.parametrize(
    "timesteps, error",
    [
        ([1.0], ValueError),  # fewer than 2
        ([1.0, 0.5, 0.7, 0.0], ValueError),  # not decreasing
        ([1.2, 0.5, 0.0], ValueError),  # outside [0, 1]
        ([1.0, 0.0, 0.0], ValueError),  # 0 before the end
        ("1.0, 0.5", TypeError),
    ],
)
def test_bad_time_grids_name_timesteps(timesteps, error):
    with pytest.raises(error, match="timesteps"):
        BridgeMethod(timesteps=timesteps)
    with pytest.raises(ValueError, match="num_steps"):
        BridgeMethod(timesteps=[1.0, 0.5, 0.0], num_steps=5)


@pytest.mark.parametrize(
    "kwargs, error, field",
    [
        ({"base": "rk4"}, ValueError, "base"),
        ({"eta": 1.5}, ValueError, "eta"),
        ({"eta": "0.5"}, TypeError, "eta"),
        ({"ot": {"epsilon": 0.1}}, TypeError, "ot"),
        ({"reference": [[1.0]]}, TypeError, "reference"),
        ({"langevin": 3}, TypeError, "langevin"),
        ({"num_steps": 0}, ValueError, "num_steps"),
    ],
)
def test_bad_configs_name_the_field(kwargs, error, field):
    with pytest.raises(error, match=field):
        BridgeMethod(**kwargs)
