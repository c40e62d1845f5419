import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.schedulers import scheduling_dpmsolver_multistep

from jaxdiff.samplers.dpm_solver import DPMSolver, solver_orders
from jaxdiff.samplers.driver import sample
from jaxdiff.schedules.discrete import DiscreteSchedule
from jaxdiff.schedules.flow import FlowSchedule
from tests.oracles import MU, STD, gaussian_model, patch_noise, run_diffusers, torch_model

SHAPE = (4, 3, 5)
TOL = {"rtol": 1e-4, "atol": 1e-5}
NOISE_MODEL = {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}
THRESH = {"thresholding": True, "sample_max_value": 3.0, "dynamic_thresholding_ratio": 0.8}
CUSTOM_BETAS = np.linspace(2e-4, 0.03, 500, dtype=np.float32)  # T = 500
KARRAS_MIN = {"use_karras_sigmas": True, "final_sigmas_type": "sigma_min"}


def _noise(shape=SHAPE):
    return np.asarray(jax.random.normal(jax.random.key(1), shape))


def _schedule(beta_schedule="linear", zero_snr=False, betas=None):
    """Our schedule, diffusers' matching kwargs and the alpha_bar the solver walks on."""
    if betas is not None:
        sched = DiscreteSchedule.create(betas=betas, rescale_betas_zero_snr=zero_snr)
        ref_kw = {"trained_betas": np.asarray(betas).tolist(), "num_train_timesteps": len(betas)}
    else:
        ours = {"squaredcos_cap_v2": "cosine"}.get(beta_schedule, beta_schedule)
        sched = DiscreteSchedule.create(ours, rescale_betas_zero_snr=zero_snr)
        ref_kw = {"beta_schedule": beta_schedule}
    ab = np.asarray(sched.alphas_cumprod).copy()
    ab[ab <= 0] = 2.0**-24  # diffusers' zero-terminal-SNR stand-in
    return sched, {**ref_kw, "rescale_betas_zero_snr": zero_snr}, ab


def _both(key, n=12, *, beta_schedule="linear", zero_snr=False, betas=None, **kw):
    sched, ref_kw, ab = _schedule(beta_schedule, zero_snr, betas)
    model = gaussian_model(ab, kw.get("prediction_type", "epsilon"))
    expected = run_diffusers(
        diffusers.DPMSolverMultistepScheduler(**ref_kw, **kw), model, _noise(), n
    )
    method = DPMSolver(num_inference_steps=n, **kw)
    out = sample(key, method, sched, model, jnp.asarray(_noise()))
    return np.asarray(out.samples), expected, out


def _check(got, expected):
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, **TOL)


# --- orders x algorithms x solver types (16 steps: no lower_order_final; full order 3) ----
# (order 1 is every run's warm-up step; solver_order=1 itself is in the next test)
@pytest.mark.parametrize("algorithm_type", ["dpmsolver++", "dpmsolver"])
@pytest.mark.parametrize("solver_order", [2, 3])
@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
def test_orders_match_diffusers(key, algorithm_type, solver_order, solver_type):
    # DPM-Solver (noise model) cannot land on sigma = 0: diffusers requires sigma_min.
    final = "zero" if algorithm_type == "dpmsolver++" else "sigma_min"
    kw = {"algorithm_type": algorithm_type, "solver_type": solver_type, "final_sigmas_type": final}
    got, expected, out = _both(key, 16, solver_order=solver_order, **kw)
    _check(got, expected)
    assert out.nfe == 16


# --- prediction types x spacings ---------------------------------------------------------
@pytest.mark.parametrize("spacing, prediction_type, extra", [
    ("leading", "v_prediction", {}), ("trailing", "sample", {}),
    ("leading", "epsilon", {"steps_offset": 1, "solver_order": 1}),
    ("linspace", "v_prediction", {"solver_order": 1, **NOISE_MODEL}),
    ("linspace", "sample", NOISE_MODEL)])  # fmt: skip
def test_prediction_types_and_spacings_match_diffusers(key, spacing, prediction_type, extra):
    kw = {"prediction_type": prediction_type, "timestep_spacing": spacing, **extra}
    got, expected, _ = _both(key, 10, **kw)
    _check(got, expected)


# --- grid and order options ----------------------------------------------------------------
@pytest.mark.parametrize("n, kw", [
    (20, {"use_karras_sigmas": True, "beta_schedule": "scaled_linear", "solver_order": 3}),
    (12, {"final_sigmas_type": "sigma_min", "timestep_spacing": "trailing", "solver_order": 3}),
    (8, {"lower_order_final": False, "final_sigmas_type": "sigma_min", "solver_order": 3}),
    (8, {"lower_order_final": False, "solver_order": 3, "solver_type": "heun"}),
    (16, {"euler_at_final": True, "final_sigmas_type": "sigma_min", "solver_order": 3}),
    (10, {**THRESH, "prediction_type": "sample"}),
    (10, {**THRESH, **NOISE_MODEL}),
    (10, {"betas": CUSTOM_BETAS, "solver_order": 3})])  # fmt: skip
def test_grid_options_match_diffusers(key, n, kw):
    got, expected, _ = _both(key, n, **kw)
    _check(got, expected)


def test_dpmsolverpp_order3_lower_order_final_karras(key):
    kw = {"solver_order": 3, "lower_order_final": True, "use_karras_sigmas": True}
    got, expected, out = _both(key, 10, beta_schedule="scaled_linear", **kw)
    _check(got, expected)
    plan = jax.jit(DPMSolver(num_inference_steps=10, **kw).plan)(
        DiscreteSchedule.create("scaled_linear")
    )
    assert out.nfe == 10
    np.testing.assert_array_equal(plan.steps["order"], [1, 2, 3, 3, 3, 3, 3, 3, 2, 1])


def test_trailing_zero_snr_v_prediction(key):
    kw = {"timestep_spacing": "trailing", "prediction_type": "v_prediction"}
    got, expected, out = _both(key, 12, beta_schedule="scaled_linear", zero_snr=True, **kw)
    _check(got, expected)
    assert float(out.first_nonfinite_step) == -1


@pytest.mark.parametrize("solver_order, solver_type", [(2, "heun"), (3, "midpoint")])
def test_sde_dpmsolverpp_noise_matches_diffusers(key, monkeypatch, solver_order, solver_type):
    n = 12
    _, calls = patch_noise(monkeypatch, scheduling_dpmsolver_multistep, key, n, SHAPE)
    kw = {"algorithm_type": "sde-dpmsolver++", "solver_type": solver_type}
    got, expected, _ = _both(key, n, solver_order=solver_order, **kw)
    assert len(calls) == n  # one draw per step, as ours
    _check(got, expected)  # diffusers adds the patched noise: ours must add the same


# --- flow schedules --------------------------------------------------------------------------
def _flow_model(T, prediction_type):
    """Exact predictions for N(MU, STD^2) data on x = (1 - s) x0 + s eps, t = s T."""

    def model(x, t, context=None):
        s = (t / T).reshape((-1,) + (1,) * (x.ndim - 1))
        a = 1.0 - s
        var = a**2 * STD**2 + s**2
        x0 = MU + a * STD**2 * (x - a * MU) / var
        eps = s * (x - a * MU) / var
        return {"flow": eps - x0, "sample": x0, "epsilon": eps}[prediction_type]

    return model


@pytest.mark.parametrize("prediction_type, shift, order", [("flow", 3.0, 2), ("epsilon", 1.0, 3)])
def test_flow_schedule_matches_diffusers_flow_sigmas(key, prediction_type, shift, order):
    n, T = 12, 1000
    model = _flow_model(T, prediction_type)
    ref_type = {"flow": "flow_prediction"}.get(prediction_type, prediction_type)
    ref = diffusers.DPMSolverMultistepScheduler(
        use_flow_sigmas=True, flow_shift=shift, solver_order=order, prediction_type=ref_type
    )
    ref.set_timesteps(n)
    ref.set_begin_index(0)
    tmodel, x = torch_model(model), torch.from_numpy(_noise().copy())
    for i, t in enumerate(ref.timesteps):
        # diffusers truncates s T to int64 timesteps; the model is told the exact s T.
        x = ref.step(tmodel(x, float(ref.sigmas[i]) * T), t, x).prev_sample
    method = DPMSolver(num_inference_steps=n, prediction_type=prediction_type, solver_order=order)
    got = sample(key, method, FlowSchedule.create(T, shift=shift), model, jnp.asarray(_noise()))
    _check(np.asarray(got.samples), x.numpy())


# --- peers' failures -------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    {}, {"use_karras_sigmas": True}, KARRAS_MIN, {**KARRAS_MIN, **NOISE_MODEL},
    {"final_sigmas_type": "sigma_min", "timestep_spacing": "trailing", "num_inference_steps": 1000},
])  # fmt: skip
def test_plan_has_no_zero_length_step(kw):
    """diffusers#6477: Karras sigmas + sigma_min repeated the last sigma (a no-op step)."""
    kw = {"num_inference_steps": 20, **kw}
    plan = jax.jit(DPMSolver(**kw).plan)(DiscreteSchedule.create("linear"))
    s0, st = np.asarray(plan.steps["sigma_s0"]), np.asarray(plan.steps["sigma_t"])
    assert np.all(st < s0) and np.all(np.asarray(plan.steps["h"]) > 0)
    assert plan.num_model_calls in (kw["num_inference_steps"], kw["num_inference_steps"] - 1)


@pytest.mark.parametrize("solver_order, solver_type", [(2, "heun"), (3, "midpoint")])
def test_final_step_moves_sample_karras_sigma_min(key, solver_order, solver_type):
    """diffusers takes a zero-length last step here (NaN for heun / order 3); we drop it."""
    n = 20
    kw = {**KARRAS_MIN, "solver_order": solver_order, "solver_type": solver_type}
    sched, ref_kw, ab = _schedule()
    model = gaussian_model(ab)
    ref = diffusers.DPMSolverMultistepScheduler(**ref_kw, **kw)
    assert np.isnan(run_diffusers(ref, model, _noise(), n)).any()  # the upstream defect
    ref = diffusers.DPMSolverMultistepScheduler(**ref_kw, **kw)
    ref.set_timesteps(n)
    assert ref.sigmas[-1] == ref.sigmas[-2] or abs(ref.sigmas[-1] / ref.sigmas[-2] - 1) < 1e-6
    tmodel, x = torch_model(model), torch.from_numpy(_noise().copy())
    for t in ref.timesteps[:-1]:  # every step but the zero-length one
        x = ref.step(tmodel(x, t), t, x).prev_sample
    method = DPMSolver(num_inference_steps=n, **kw)
    out = sample(key, method, sched, model, jnp.asarray(_noise()), return_trajectory=True)
    assert out.nfe == n - 1
    _check(np.asarray(out.samples), x.numpy())
    traj = np.asarray(out.trajectory)
    assert np.abs(traj[-1] - traj[-2]).max() > 1e-3  # the last step really moves


def test_final_step_moves_sample_default(key):
    sched, _, ab = _schedule()
    method, model = DPMSolver(num_inference_steps=10, use_karras_sigmas=True), gaussian_model(ab)
    out = sample(key, method, sched, model, jnp.asarray(_noise()), return_trajectory=True)
    traj = np.asarray(out.trajectory)
    assert out.nfe == 10
    # The last step lands on sigma = 0: the exact posterior mean of x0 at sigma_min. It is
    # a small move (shrinkage ~ sigma_min^2 / STD^2) but never the no-op of a repeated sigma.
    alpha, sigma = np.sqrt(ab[0]), np.sqrt(1 - ab[0])
    x0 = MU + alpha * STD**2 / (alpha**2 * STD**2 + sigma**2) * (traj[-2] - alpha * MU)
    np.testing.assert_allclose(traj[-1], x0, rtol=1e-5, atol=1e-6)
    assert np.abs(traj[-1] - traj[-2]).max() > 1e-4


def test_cosine_karras_no_duplicates_matches_fixed_diffusers(key):
    """diffusers#12771: cosine + Karras truncated timesteps to repeated ints and crashed."""
    n = 20
    cosine = DiscreteSchedule.create("cosine")
    method = DPMSolver(num_inference_steps=n, use_karras_sigmas=True)
    plan = jax.jit(method.plan)(cosine)
    ts, lam_steps = np.asarray(plan.timesteps), np.asarray(plan.steps["h"])
    assert plan.num_model_calls == n
    assert np.all(np.diff(ts) < 0) and np.all(lam_steps > 0)  # no repeated timestep or sigma
    # Oracle: diffusers' own Karras grid on exactly our betas (trained_betas), with the
    # fractional timesteps it means to keep (no int64 truncation) and a step index from 0.
    _, ref_kw, ab = _schedule(betas=np.asarray(cosine.betas))
    ref = diffusers.DPMSolverMultistepScheduler(**ref_kw, use_karras_sigmas=True)
    ref.set_timesteps(n)
    ref.set_begin_index(0)
    log_sigmas = np.log(np.asarray(((1 - ref.alphas_cumprod) / ref.alphas_cumprod) ** 0.5))
    frac = ref._sigma_to_t(ref.sigmas[:-1].numpy().astype(np.float64), log_sigmas)
    np.testing.assert_allclose(ts, frac, rtol=1e-4, atol=1e-3)
    model = gaussian_model(ab)
    tmodel, x = torch_model(model), torch.from_numpy(_noise().copy())
    for i, t in enumerate(frac):
        x = ref.step(tmodel(x, t), ref.timesteps[i], x).prev_sample
    out = sample(key, method, cosine, model, jnp.asarray(_noise()))
    assert bool(out.all_finite)
    _check(np.asarray(out.samples), x.numpy())
    # Unpatched diffusers repeats int timesteps here (the reported crash's cause).
    assert len(set(ref.timesteps.tolist())) < n


# --- order schedule, closed form, inputs -----------------------------------------------------
@pytest.mark.parametrize("n", [2, 5, 14, 15])
@pytest.mark.parametrize("solver_order", [1, 2, 3])
@pytest.mark.parametrize("flags", [
    (True, False, "zero"), (False, False, "sigma_min"), (True, False, "sigma_min"),
    (False, True, "sigma_min")])  # fmt: skip
def test_solver_orders_match_diffusers_choice(monkeypatch, n, solver_order, flags):
    lower_order_final, euler_at_final, final = flags
    flag_kw = {"lower_order_final": lower_order_final, "euler_at_final": euler_at_final}
    ref = diffusers.DPMSolverMultistepScheduler(
        solver_order=solver_order, final_sigmas_type=final, **flag_kw
    )
    used = []
    names = ["dpm_solver_first_order_update", "multistep_dpm_solver_second_order_update",
             "multistep_dpm_solver_third_order_update"]  # fmt: skip
    for order, name in enumerate(names, 1):  # record which update diffusers takes
        fake = lambda *a, _o=order, sample=None, **k: used.append(_o) or sample  # noqa: E731
        monkeypatch.setattr(ref, name, fake)
    ref.set_timesteps(n)
    x = torch.zeros(1, 2)
    for t in ref.timesteps:
        ref.step(torch.zeros_like(x), t, x)
    ours = solver_orders(n, solver_order, final_zero=final == "zero", **flag_kw)
    np.testing.assert_array_equal(ours, used)


@pytest.mark.parametrize("kw", [{}, {**KARRAS_MIN, **NOISE_MODEL, "solver_order": 3}])
def test_gaussian_data_closed_form(key, kw):
    sched = DiscreteSchedule.create("linear")
    noise = jax.random.normal(jax.random.key(7), (4000, 1))
    model = gaussian_model(sched.alphas_cumprod)
    x = np.asarray(
        sample(key, DPMSolver(num_inference_steps=25, **kw), sched, model, noise).samples
    )
    # Exact model, exact ODE -> N(MU, STD^2); 4000 samples: se(mean) ~ 0.008, se(std) ~ 0.006.
    assert abs(x.mean() - MU) < 0.04 and abs(x.std() - STD) < 0.03


def test_numeric_knobs_traced_no_recompile(key):
    sched = DiscreteSchedule.create("linear")
    model = gaussian_model(sched.alphas_cumprod, "sample")
    noise = jnp.asarray(_noise())
    fn = jax.jit(lambda m: sample(key, m, sched, model, noise).samples)
    base = {"num_inference_steps": 8, "prediction_type": "sample", "thresholding": True}
    a = fn(DPMSolver(**base, sample_max_value=3.0, dynamic_thresholding_ratio=0.6))
    b = fn(DPMSolver(**base, sample_max_value=3.0, dynamic_thresholding_ratio=0.9))
    assert fn._cache_size() == 1 and not np.allclose(a, b)


@pytest.mark.parametrize("kw, field, exc", [
    ({"solver_order": 4}, "solver_order", ValueError),
    ({"solver_order": 0}, "solver_order", ValueError),
    ({"solver_order": 2.0}, "solver_order", TypeError),
    ({"algorithm_type": "deis"}, "algorithm_type", ValueError),
    ({"solver_type": "bh2"}, "solver_type", ValueError),
    ({"final_sigmas_type": "denoise_to_zero"}, "final_sigmas_type", ValueError),
    ({"algorithm_type": "dpmsolver"}, "final_sigmas_type", ValueError),
    ({"num_inference_steps": 0}, "num_inference_steps", ValueError),
    ({"num_inference_steps": 1001}, "num_inference_steps", ValueError),
    ({"timestep_spacing": "uniform"}, "timestep_spacing", ValueError),
    ({"prediction_type": "flow"}, "prediction_type", ValueError)])  # fmt: skip
def test_bad_inputs_raise_naming_field(kw, field, exc):
    with pytest.raises(exc, match=field):
        DPMSolver(**{"num_inference_steps": 10, **kw}).plan(DiscreteSchedule.create("linear"))


def test_bad_schedule_options_raise():
    flow = FlowSchedule.create(shift=3.0)
    with pytest.raises(ValueError, match="use_karras_sigmas"):
        DPMSolver(num_inference_steps=10, use_karras_sigmas=True).plan(flow)
    with pytest.raises(ValueError, match="prediction_type"):
        DPMSolver(num_inference_steps=10, prediction_type="v_prediction").plan(flow)
    with pytest.raises(TypeError, match="schedule"):
        DPMSolver(num_inference_steps=10).plan(object())
