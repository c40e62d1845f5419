import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.schedulers import scheduling_sde_ve
from diffusers.schedulers.deprecated import scheduling_sde_vp

from jaxdiff.samplers.driver import sample
from jaxdiff.samplers.pc import PredictorCorrector
from jaxdiff.samplers.probability_flow import ProbabilityFlow
from jaxdiff.schedules.continuous import make_schedule
from jaxdiff.schedules.discrete import DiscreteSchedule

MU, STD = 0.7, 0.5
NAMES = ["linear", "cosine", "karras"]
SCHEDS = {name: make_schedule(name) for name in NAMES}
SHAPE = (4, 3, 5)


def exact_posterior(sched, x, t, mu=MU, std=STD):
    """Exact ``(score, eps, x0)`` for data N(mu, std^2 I) under ``x_t = a x0 + s eps``.

    The marginal is ``N(a mu, (a^2 std^2 + s^2) I)``, so ``score = -(x - a mu) / v`` with
    ``v = a^2 std^2 + s^2``; ``eps = -s score`` and ``x0 = (x - s eps) / a`` (Tweedie).
    """
    shape = (-1,) + (1,) * (x.ndim - 1)
    a = jnp.broadcast_to(sched.alpha(t), x.shape[:1]).reshape(shape)
    s = jnp.broadcast_to(sched.sigma(t), x.shape[:1]).reshape(shape)
    score = -(x - a * mu) / (a**2 * std**2 + s**2)
    eps = -s * score
    return score, eps, (x - s * eps) / a


def exact_model(sched, prediction_type="epsilon"):
    def model(x, t, context=None):
        score, eps, x0 = exact_posterior(sched, x, t)
        if prediction_type == "v_prediction":
            shape = (-1,) + (1,) * (x.ndim - 1)
            a, s = sched.alpha(t).reshape(shape), sched.sigma(t).reshape(shape)
            return a * eps - s * x0
        return {"score": score, "epsilon": eps, "sample": x0}[prediction_type]

    return model


MODELS = {name: exact_model(SCHEDS[name]) for name in NAMES}
NOISE = jax.random.normal(jax.random.key(1), (2000, 2))  # 4000 scalar samples


def _stats_ok(x, tol=0.03):
    # 4000 samples: standard errors are ~0.008 (mean) and ~0.006 (std), so 0.03 is ~4 SE;
    # a wrong drift, diffusion or score scaling moves them by far more.
    x = np.asarray(x)
    assert np.all(np.isfinite(x))
    assert abs(x.mean() - MU) < tol, x.mean()
    assert abs(x.std() - STD) < tol, x.std()


@pytest.mark.parametrize("corrector", ["langevin", "none"])
@pytest.mark.parametrize("predictor", ["reverse_diffusion", "euler_maruyama"])
@pytest.mark.parametrize("name", NAMES)
def test_pc_reproduces_gaussian_data(key, name, predictor, corrector):
    method = PredictorCorrector(num_steps=200, predictor=predictor, corrector=corrector)
    out = sample(key, method, SCHEDS[name], MODELS[name], NOISE)
    assert out.nfe == (400 if corrector == "langevin" else 200)
    assert bool(out.all_finite)
    _stats_ok(out.samples)


@pytest.mark.parametrize("solver,num_steps", [("euler", 1000), ("heun", 100)])
@pytest.mark.parametrize("name", NAMES)
def test_probability_flow_reproduces_gaussian_data(key, name, solver, num_steps):
    # Euler in t is first order; on the EDM schedule (sigma ~ t^7) it needs ~1000 steps.
    out = sample(
        key, ProbabilityFlow(num_steps=num_steps, solver=solver), SCHEDS[name], MODELS[name], NOISE
    )
    assert out.nfe == num_steps * (2 if solver == "heun" else 1)
    _stats_ok(out.samples)


@pytest.mark.parametrize("name", NAMES)
def test_probability_flow_is_the_exact_affine_map(name):
    # For Gaussian data the PF ODE is linear: x_t - a_t mu = sqrt(v_t / v_1) (x_1 - a_1 mu)
    # with v_t = a_t^2 std^2 + s_t^2 (standardised coordinates are constant along it).
    sched = SCHEDS[name]
    # Heun in t is O(h^2); sigma(t) ~ t^7 of the EDM schedule needs 200 steps for 2e-3
    method = ProbabilityFlow(num_steps=200 if name == "karras" else 100, solver="heun")
    out = sample(jax.random.key(0), method, sched, MODELS[name], NOISE)
    again = sample(jax.random.key(7), method, sched, MODELS[name], NOISE)
    np.testing.assert_array_equal(out.samples, again.samples)  # deterministic: key unused
    x1 = np.asarray(NOISE, np.float64) * float(sched.prior_std)
    v = lambda t: float(sched.alpha(t)) ** 2 * STD**2 + float(sched.sigma(t)) ** 2  # noqa: E731
    a1, am = float(sched.alpha(1.0)), float(sched.alpha(1e-3))
    expected = am * MU + np.sqrt(v(1e-3) / v(1.0)) * (x1 - a1 * MU)
    # within 0.2% of |x| + 0.2% of the data std
    np.testing.assert_allclose(out.samples, expected, rtol=2e-3, atol=1e-3)
    slope = np.polyfit(x1.ravel(), np.asarray(out.samples, np.float64).ravel(), 1)[0]
    assert slope == pytest.approx(STD / float(sched.prior_std), rel=0.02)


@pytest.mark.parametrize(
    "name,prediction_type",
    [
        ("linear", "score"),
        ("linear", "sample"),
        ("linear", "v_prediction"),
        ("karras", "score"),
        ("karras", "sample"),
    ],  # v is VP-only (see test_bad_inputs)
)
def test_prediction_types_agree(key, name, prediction_type):
    sched = SCHEDS[name]
    noise = jax.random.normal(jax.random.key(2), SHAPE)
    for method in [PredictorCorrector(num_steps=15), ProbabilityFlow(num_steps=10)]:
        ref = sample(key, method, sched, MODELS[name], noise).samples
        other = method.replace(prediction_type=prediction_type)
        got = sample(key, other, sched, exact_model(sched, prediction_type), noise).samples
        # the conversions differ in float32 rounding; karras states reach |x| ~ 200
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "method",
    [
        PredictorCorrector(num_steps=6, denoise_final=True),
        PredictorCorrector(
            num_steps=6, predictor="euler_maruyama", corrector="none", denoise_final=True
        ),
        ProbabilityFlow(num_steps=6, solver="euler", denoise_final=True),
        ProbabilityFlow(num_steps=6, solver="heun", denoise_final=True),
    ],
)
def test_denoise_final_returns_x0_at_t_min(key, method):
    sched = SCHEDS["linear"]
    noise = jax.random.normal(jax.random.key(3), SHAPE)
    out = sample(key, method, sched, MODELS["linear"], noise, return_trajectory=True)
    x_before = out.trajectory[-2]
    _, _, x0 = exact_posterior(sched, x_before, jnp.float32(1e-3))
    np.testing.assert_allclose(out.samples, x0, rtol=1e-5, atol=1e-6)
    plain = sample(key, method.replace(denoise_final=False), sched, MODELS["linear"], noise)
    assert not np.allclose(plain.samples, out.samples)


@pytest.mark.parametrize(
    "method,expected_nfe,row_times",
    [
        (PredictorCorrector(num_steps=5, n_corrector_steps=2), 15, "pc"),
        (PredictorCorrector(num_steps=5, corrector="none", n_corrector_steps=3), 5, "pc"),
        (ProbabilityFlow(num_steps=5, solver="euler"), 5, "euler"),
        (ProbabilityFlow(num_steps=5, solver="heun"), 10, "heun"),
        (ProbabilityFlow(num_steps=5, solver="heun", denoise_final=True), 11, "heun+1"),
    ],
)
def test_nfe_and_model_times(key, method, expected_nfe, row_times):
    seen = []

    def model(x, t, context=None):
        jax.debug.callback(lambda v: seen.append(float(v)), t[0], ordered=True)
        return 0.1 * x

    out = sample(key, method, SCHEDS["linear"], model, jnp.ones(SHAPE))
    jax.effects_barrier()
    assert out.nfe == expected_nfe == len(seen)
    grid = np.linspace(1.0, 1e-3, 5 if row_times == "pc" else 6)
    c = method.n_corrector_steps if row_times == "pc" and method.corrector != "none" else 0
    expected = {
        "pc": np.repeat(grid, c + 1),
        "euler": grid[:-1],
        "heun": np.stack([grid[:-1], grid[1:]], 1).ravel(),
        "heun+1": np.append(np.stack([grid[:-1], grid[1:]], 1).ravel(), 1e-3),
    }[row_times]
    np.testing.assert_allclose(seen, expected, rtol=1e-6)
    assert all(0.0 < t <= 1.0 for t in seen)


def test_num_steps_default_from_schedule(key):
    sched = make_schedule("karras", num_timesteps=12)
    out = sample(key, PredictorCorrector(corrector="none"), sched, exact_model(sched), NOISE[:8])
    assert out.nfe == 12
    assert sample(key, ProbabilityFlow(), sched, exact_model(sched), NOISE[:8]).nfe == 24


@pytest.mark.parametrize("a", [1.0, 0.9])
def test_langevin_corrector_matches_diffusers_score_sde_ve(key, monkeypatch, a):
    # Song et al. Algorithms 4-5 as diffusers' ScoreSdeVeScheduler.step_correct writes the
    # VE case (alpha_i = 1). The VP case scales the step by alpha_i = a^2, which is the VE
    # step with snr * a, so the same oracle checks it.
    x = np.array(jax.random.normal(jax.random.key(4), SHAPE)) * 3.0
    score = np.array(jax.random.normal(jax.random.key(5), SHAPE))
    z = np.array(jax.random.normal(key, SHAPE))
    monkeypatch.setattr(
        scheduling_sde_ve, "randn_tensor", lambda *a, **k: torch.from_numpy(z.copy())
    )
    ref = diffusers.ScoreSdeVeScheduler(snr=0.21 * a)
    ref.set_timesteps(10)
    expected = ref.step_correct(torch.from_numpy(score), torch.from_numpy(x)).prev_sample
    row = _row(sigma=2.0, a=a, corrector=True)
    method = PredictorCorrector(prediction_type="score", snr=0.21)
    _, got = method.step(key, (), jnp.asarray(x), jnp.asarray(score), row)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_pc_plan_coefficients_vp():
    # score_sde's VP discretisation: a_i = sqrt(1 - beta_i), G_i^2 = beta_i with
    # 1 - beta_i = alpha_bar(t_i) / alpha_bar(t_{i+1}); the Langevin alpha_i = a_i^2.
    sched = SCHEDS["linear"]
    plan = PredictorCorrector(num_steps=6, n_corrector_steps=1).plan(sched)
    t = np.linspace(1.0, 1e-3, 6)
    t_next = np.append(t[1:], 0.0)
    ab = lambda u: np.exp(-0.5 * u**2 * 19.9 - 0.1 * u)  # noqa: E731
    one_minus_beta = ab(t) / ab(t_next)
    np.testing.assert_allclose(plan.steps["a"][::2], np.sqrt(one_minus_beta), rtol=1e-5)
    np.testing.assert_allclose(plan.steps["G2"][::2], 1 - one_minus_beta, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(plan.steps["dt"][1::2], t_next - t, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(plan.steps["corrector"], np.tile([True, False], 6))
    np.testing.assert_array_equal(plan.steps["final"], np.arange(12) == 11)
    assert float(plan.init_noise_sigma) == 1.0
    assert float(PredictorCorrector().plan(SCHEDS["karras"]).init_noise_sigma) == 80.0


def test_reverse_diffusion_matches_diffusers_score_sde_ve(key, monkeypatch):
    # appendix E reverse diffusion for VE: x + (s_i^2 - s_{i-1}^2) score + G z
    x = np.array(jax.random.normal(jax.random.key(4), SHAPE)) * 30.0
    score = np.array(jax.random.normal(jax.random.key(5), SHAPE)) * 0.03
    z = np.array(jax.random.normal(key, SHAPE))
    monkeypatch.setattr(
        scheduling_sde_ve, "randn_tensor", lambda *a, **k: torch.from_numpy(z.copy())
    )
    ref = diffusers.ScoreSdeVeScheduler()
    ref.set_timesteps(10)
    ref.set_sigmas(10)
    t = ref.timesteps[3]
    expected = ref.step_pred(torch.from_numpy(score), t, torch.from_numpy(x)).prev_sample
    idx = int((t * 9).long())
    s_cur, s_adj = float(ref.discrete_sigmas[idx]), float(ref.discrete_sigmas[idx - 1])
    row = _row(sigma=s_cur, a=1.0, G2=s_cur**2 - s_adj**2)
    method = PredictorCorrector(prediction_type="score", corrector="none")
    _, got = method.step(key, (), jnp.asarray(x), jnp.asarray(score), row)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-4)


def test_euler_maruyama_matches_diffusers_score_sde_vp(key, monkeypatch):
    # diffusers' ScoreSdeVpScheduler: EM on the linear VP-SDE from an eps model, dt = -1/N.
    # Our plan supplies alpha, sigma, f, g2 at t; only dt differs (we use the real grid).
    # diffusers runs in float64 here: in float32 its sqrt(1 - exp(2 log_mean)) loses ~1e-3
    # relative at t = 1e-3, where our expm1 form does not.
    n = 10
    sched = SCHEDS["linear"]
    plan = PredictorCorrector(num_steps=n, predictor="euler_maruyama", corrector="none").plan(sched)
    x = np.array(jax.random.normal(jax.random.key(4), SHAPE))
    eps = np.array(jax.random.normal(jax.random.key(5), SHAPE))
    z = np.array(jax.random.normal(key, SHAPE))
    monkeypatch.setattr(
        scheduling_sde_vp, "randn_tensor", lambda *a, **k: torch.from_numpy(z.astype(np.float64))
    )
    ref = scheduling_sde_vp.ScoreSdeVpScheduler()
    ref.set_timesteps(n)
    for i in [0, 4, 9]:
        t = ref.timesteps[i]
        assert float(t) == pytest.approx(float(plan.timesteps[i]), abs=1e-6)
        expected, _ = ref.step_pred(
            torch.from_numpy(eps).double(), torch.from_numpy(x).double(), t.double()
        )
        row = {k: v[i] for k, v in plan.steps.items()} | {"dt": jnp.float32(-1.0 / n)}
        method = PredictorCorrector(predictor="euler_maruyama", corrector="none")
        _, got = method.step(key, (), jnp.asarray(x), jnp.asarray(eps), row)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)


def _row(sigma, a=1.0, G2=0.0, corrector=False):
    f32 = jnp.float32
    return {
        "alpha": f32(1.0),
        "sigma": f32(sigma),
        "a": f32(a),
        "G2": f32(G2),
        "f": f32(0.0),
        "g2": f32(0.0),
        "dt": f32(-0.1),
        "corrector": jnp.asarray(corrector),
        "final": jnp.asarray(False),
    }


def test_traced_knobs_do_not_recompile(key):
    sched, model = SCHEDS["linear"], MODELS["linear"]
    noise = NOISE[:16]
    fn = jax.jit(lambda m: sample(key, m, sched, model, noise).samples)
    a = fn(PredictorCorrector(num_steps=8, snr=0.16))
    b = fn(PredictorCorrector(num_steps=8, snr=0.4))
    c = fn(PredictorCorrector(num_steps=8, snr=0.16, t_min=0.05))
    assert fn._cache_size() == 1
    assert not np.allclose(a, b) and not np.allclose(a, c)


def test_vmap_over_schedule_numbers(key):
    def run(beta_max):
        sched = make_schedule("linear", beta_max=beta_max)
        return sample(key, ProbabilityFlow(num_steps=8), sched, _toy_model, NOISE[:4]).samples

    betas = jnp.asarray([10.0, 20.0])
    got = jax.vmap(run)(betas)
    np.testing.assert_allclose(got[0], run(10.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], run(20.0), rtol=1e-5, atol=1e-6)


def _toy_model(x, t, context=None):
    return 0.3 * x + t.reshape(-1, 1)


def test_bad_inputs(key):
    sched, model, x = SCHEDS["linear"], MODELS["linear"], NOISE[:4]
    cases = [
        (lambda: PredictorCorrector(predictor="ancestral"), "predictor"),
        (lambda: PredictorCorrector(corrector="ald"), "corrector"),
        (lambda: PredictorCorrector(num_steps=0), "num_steps"),
        (lambda: ProbabilityFlow(num_steps=-3), "num_steps"),
        (lambda: ProbabilityFlow(solver="rk4"), "solver"),
        (lambda: PredictorCorrector(n_corrector_steps=-1), "n_corrector_steps"),
        (lambda: PredictorCorrector(prediction_type="flow"), "prediction_type"),
    ]
    for method, field in cases:  # checked when the method is built
        with pytest.raises(ValueError, match=field):
            sample(key, method(), sched, model, x)
    with pytest.raises(ValueError, match="prediction_type.*variance"):
        sample(key, ProbabilityFlow(prediction_type="v_prediction"), SCHEDS["karras"], model, x)
    for bad in [0.0, 1.0, -0.1, 1.5]:
        with pytest.raises(ValueError, match="t_min"):
            PredictorCorrector(t_min=bad)
        with pytest.raises(ValueError, match="t_min"):
            ProbabilityFlow(t_min=bad)
    with pytest.raises(TypeError, match="ContinuousSchedule"):
        sample(key, ProbabilityFlow(num_steps=3), DiscreteSchedule.create(), model, x)
    with pytest.raises(ValueError, match="name"):
        make_schedule("subvp")
