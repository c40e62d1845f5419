import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.schedulers import scheduling_euler_ancestral_discrete, scheduling_euler_discrete
from diffusers.schedulers.scheduling_euler_discrete import betas_for_alpha_bar

from jaxdiff.samplers.driver import sample, step_keys
from jaxdiff.samplers.euler import Euler, EulerAncestral
from jaxdiff.schedules.discrete import DiscreteSchedule
from jaxdiff.schedules.flow import FlowSchedule
from tests.oracles import MU, STD, gaussian_model, patch_noise, run_diffusers
from tests.schedules.test_flow import flow_gaussian_model, run_flow_diffusers

SHAPE = (4, 3, 5)
SD = {"beta_start": 0.00085, "beta_end": 0.012}  # Stable Diffusion's scaled_linear betas
REF, REF_A = diffusers.EulerDiscreteScheduler, diffusers.EulerAncestralDiscreteScheduler


def _noise():
    return np.asarray(jax.random.normal(jax.random.key(1), SHAPE))


def _schedule(beta_schedule="scaled_linear", zero_snr=False, betas=None):
    """(our schedule, diffusers' schedule kwargs, the alpha_bar Euler walks on)."""
    if beta_schedule == "squaredcos_cap_v2":
        # diffusers' float64 cosine betas: ours (float32, schedules/betas.py) differ by up
        # to 7e-4 in sigma_min, which is not what these sampler tests are about.
        betas = betas_for_alpha_bar(1000).numpy()
    ref_kw = {"beta_schedule": beta_schedule, "rescale_betas_zero_snr": zero_snr}
    if betas is not None:
        sched = DiscreteSchedule.create(betas=betas, rescale_betas_zero_snr=zero_snr)
        if beta_schedule != "squaredcos_cap_v2":
            ref_kw = {"trained_betas": list(betas), "num_train_timesteps": len(betas)}
    else:
        sched = DiscreteSchedule.create(beta_schedule, **SD, rescale_betas_zero_snr=zero_snr)
        ref_kw.update(SD)
    ab = np.asarray(sched.alphas_cumprod).copy()
    ab[ab <= 0] = 2.0**-24  # what Euler walks on (diffusers' zero-SNR stand-in)
    return sched, ref_kw, ab


def _both(key, cls, ref_cls, *, n=12, beta_schedule="scaled_linear", zero_snr=False, betas=None,
          prediction_type="epsilon", step_kwargs=None, **kw):  # fmt: skip
    sched, ref_kw, ab = _schedule(beta_schedule, zero_snr, betas)
    model = gaussian_model(ab, prediction_type)
    ref = ref_cls(**ref_kw, prediction_type=prediction_type, **kw)
    expected = run_diffusers(ref, model, _noise(), n, step_kwargs)
    method = cls(
        num_inference_steps=n, prediction_type=prediction_type, **kw, **(step_kwargs or {})
    )
    return np.asarray(sample(key, method, sched, model, jnp.asarray(_noise())).samples), expected


# Every spacing and every prediction type diffusers supports, in pairs (each pair costs a
# compile; spacings and prediction types are independent code paths). More combinations
# run below: zero-SNR trailing v, churn with v, Karras, sigma_min, log_linear.
@pytest.mark.parametrize(
    "spacing, prediction_type",
    [("linspace", "epsilon"), ("leading", "v_prediction"), ("trailing", "sample")],
)
def test_euler_matches_diffusers(key, spacing, prediction_type):
    got, expected = _both(
        key, Euler, REF, prediction_type=prediction_type, timestep_spacing=spacing
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# trailing: test_zero_snr_trailing_v
@pytest.mark.parametrize(
    "spacing, prediction_type", [("linspace", "epsilon"), ("leading", "v_prediction")]
)
def test_euler_ancestral_matches_diffusers(key, monkeypatch, spacing, prediction_type):
    patch_noise(monkeypatch, scheduling_euler_ancestral_discrete, key, 12, SHAPE)
    kw = {"prediction_type": prediction_type, "timestep_spacing": spacing}
    got, expected = _both(key, EulerAncestral, REF_A, **kw)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kw",
    [
        {"use_karras_sigmas": True},
        {"interpolation_type": "log_linear"},
        {"final_sigmas_type": "sigma_min", "timestep_spacing": "trailing"},
        {"final_sigmas_type": "sigma_min"},  # linspace ends at sigma_min: one step dropped
        {
            "final_sigmas_type": "sigma_min",
            "use_karras_sigmas": True,
            "timestep_spacing": "leading",
        },
    ],
)
def test_euler_grid_options_match_diffusers(key, kw):
    got, expected = _both(key, Euler, REF, **kw)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls, ref_cls", [(Euler, REF), (EulerAncestral, REF_A)])
def test_zero_snr_trailing_v(key, monkeypatch, cls, ref_cls):
    patch_noise(monkeypatch, scheduling_euler_ancestral_discrete, key, 12, SHAPE)
    kw = {"timestep_spacing": "trailing", "prediction_type": "v_prediction"}
    got, expected = _both(key, cls, ref_cls, zero_snr=True, **kw)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_custom_betas(key):
    betas = np.linspace(1e-4, 0.03, 500) ** 1.1
    got, expected = _both(key, Euler, REF, betas=betas)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_churn_every_step_matches_diffusers(key, monkeypatch):
    patch_noise(monkeypatch, scheduling_euler_discrete, key, 12, SHAPE)
    churn = {"s_churn": 3.0, "s_noise": 0.9}
    got, expected = _both(key, Euler, REF, step_kwargs=churn)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_churn_window_matches_diffusers(key, monkeypatch):
    # v_prediction: diffusers reads a churned v output at sigma, not sigma_hat.
    prediction_type = "v_prediction"
    # Only sigmas in [s_tmin, s_tmax] are churned: diffusers draws noise on those steps
    # only, so hand it the noise of the step it is on.
    noises = [np.asarray(jax.random.normal(k, SHAPE)) for k in step_keys(key, 12)]
    ref_box = []

    def fake_randn(shape, generator=None, device=None, dtype=None, layout=None):
        return torch.from_numpy(noises[ref_box[0].step_index].copy())

    monkeypatch.setattr(scheduling_euler_discrete, "randn_tensor", fake_randn)
    sched, ref_kw, ab = _schedule()
    model = gaussian_model(ab, prediction_type)
    ref = diffusers.EulerDiscreteScheduler(**ref_kw, prediction_type=prediction_type)
    ref_box.append(ref)
    churn = {"s_churn": 5.0, "s_tmin": 0.5, "s_tmax": 4.0, "s_noise": 1.1}
    expected = run_diffusers(ref, model, _noise(), 12, churn)
    method = Euler(num_inference_steps=12, prediction_type=prediction_type, **churn)
    got = sample(key, method, sched, model, jnp.asarray(_noise())).samples
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_churn_knobs_are_traced(key):
    sched, _, ab = _schedule()
    model, noise = gaussian_model(ab), jnp.asarray(_noise())
    fn = jax.jit(lambda m: sample(key, m, sched, model, noise).samples)
    a = fn(Euler(num_inference_steps=8))
    b = fn(Euler(num_inference_steps=8, s_churn=2.0, s_tmin=0.1, s_tmax=10.0, s_noise=1.0))
    assert fn._cache_size() == 1 and not np.allclose(a, b)


def test_cosine_karras_no_duplicates_and_matches(key):
    # diffusers#12771: cosine betas + Karras sigmas gave duplicate timesteps and a crash.
    plan = Euler(num_inference_steps=20, use_karras_sigmas=True).plan(
        DiscreteSchedule.create("cosine")
    )
    assert np.all(np.diff(np.asarray(plan.timesteps)) < 0)
    assert np.all(np.diff(np.asarray(plan.steps["sigma"])) < 0)
    kw = {"beta_schedule": "squaredcos_cap_v2", "use_karras_sigmas": True}
    got, expected = _both(key, Euler, REF, n=20, **kw)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


_GRIDS = [
    Euler(num_inference_steps=10),
    Euler(num_inference_steps=10, use_karras_sigmas=True),
    Euler(num_inference_steps=10, interpolation_type="log_linear"),
    Euler(num_inference_steps=10, final_sigmas_type="sigma_min"),
    Euler(num_inference_steps=10, final_sigmas_type="sigma_min", use_karras_sigmas=True),
    Euler(num_inference_steps=10, final_sigmas_type="sigma_min", timestep_spacing="leading"),
]


def test_no_zero_length_steps():
    # diffusers#6477: a repeated last sigma made the final step a no-op.
    sched, _, _ = _schedule()
    for method in _GRIDS:
        steps = method.plan(sched).steps
        assert np.all(np.asarray(steps["sigma"]) > np.asarray(steps["sigma_next"])), method
    steps = EulerAncestral(num_inference_steps=10, use_karras_sigmas=True).plan(sched).steps
    assert np.all(np.asarray(steps["sigma"]) > np.asarray(steps["sigma_down"]))


@pytest.mark.parametrize("method", [_GRIDS[3], EulerAncestral(num_inference_steps=10)])
def test_final_step_moves_the_sample(key, method):
    sched, _, ab = _schedule()
    out = sample(
        key, method, sched, gaussian_model(ab), jnp.asarray(_noise()), return_trajectory=True
    )
    traj = np.asarray(out.trajectory)
    assert np.max(np.abs(traj[-1] - traj[-2])) > 1e-3


def test_sigma_min_linspace_drops_the_zero_length_step():
    sched, _, _ = _schedule()
    calls = lambda **kw: Euler(num_inference_steps=10, **kw).plan(sched).num_model_calls  # noqa: E731
    assert calls(final_sigmas_type="sigma_min") == 9
    assert calls(final_sigmas_type="sigma_min", timestep_spacing="trailing") == 10
    assert calls(final_sigmas_type="Sigma_Min") == 9  # names in any case


@pytest.mark.parametrize(
    "method",
    [
        Euler(num_inference_steps=100),
        EulerAncestral(
            num_inference_steps=200, prediction_type="sample", timestep_spacing="trailing"
        ),
    ],
)
def test_gaussian_closed_form(method):
    # Exact denoiser for N(0.7, 0.5^2) on the linear schedule (sigma_max ~ 157, so the
    # N(0, sigma_max^2) start biases the mean by only ~0.002). The remaining deviations are
    # discretisation (Euler ~0.01 at 100 steps; ancestral ~0.015 at 200) and sampling error
    # (~0.006); a wrong scaling or step formula moves the std by far more than 0.03.
    sched = DiscreteSchedule.create("linear")
    model = gaussian_model(sched.alphas_cumprod, method.prediction_type)
    noise = jax.random.normal(jax.random.key(7), (4000, 1))
    x = np.asarray(sample(jax.random.key(3), method, sched, model, noise).samples)
    assert abs(x.mean() - MU) < 0.03 and abs(x.std() - STD) < 0.03


def test_score_prediction_equals_epsilon(key):
    sched, _, ab = _schedule()
    eps_model = gaussian_model(ab, "epsilon")

    def score_model(x, t, context=None):
        s = jnp.interp(t, jnp.arange(ab.shape[0], dtype=jnp.float32), np.sqrt((1 - ab) / ab))
        return -eps_model(x, t) * jnp.sqrt(1.0 + s**2).reshape(-1, 1, 1) / s.reshape(-1, 1, 1)

    a = sample(key, Euler(num_inference_steps=10), sched, eps_model, jnp.asarray(_noise()))
    score = Euler(num_inference_steps=10, prediction_type="score")
    b = sample(key, score, sched, score_model, jnp.asarray(_noise()))
    np.testing.assert_allclose(a.samples, b.samples, rtol=1e-4, atol=1e-5)


# --- rectified flow --------------------------------------------------------------------
@pytest.mark.parametrize(
    "shift, sigmas, n", [(3.0, None, 12), (3.0, [1.0, 0.85, 0.6, 0.4, 0.2, 0.1], 6)]
)
def test_flow_euler_matches_diffusers(key, shift, sigmas, n):
    model = flow_gaussian_model()
    ref = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    expected = run_flow_diffusers(ref, model, _noise(), n=n, sigmas=sigmas)
    sched = FlowSchedule.create(shift=shift, sigmas=sigmas)
    # timestep_spacing does not apply to flow grids (diffusers ignores it too)
    method = Euler(num_inference_steps=n, prediction_type="flow", timestep_spacing="leading")
    got = sample(key, method, sched, model, jnp.asarray(_noise()))
    np.testing.assert_allclose(got.samples, expected, rtol=1e-4, atol=1e-5)


def test_flow_ignores_churn_like_diffusers():
    # FlowMatchEulerDiscreteScheduler.step accepts s_churn but never uses it.
    steps = (
        Euler(num_inference_steps=6, prediction_type="flow", s_churn=5.0)
        .plan(FlowSchedule.create(shift=3.0))
        .steps
    )
    np.testing.assert_array_equal(steps["sigma_hat"], steps["sigma"])


def test_flow_euler_karras_matches_diffusers(key):
    model = flow_gaussian_model()
    ref = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0, use_karras_sigmas=True)
    expected = run_flow_diffusers(ref, model, _noise(), n=10)
    method = Euler(num_inference_steps=10, prediction_type="flow", use_karras_sigmas=True)
    got = sample(key, method, FlowSchedule.create(shift=3.0), model, jnp.asarray(_noise()))
    np.testing.assert_allclose(got.samples, expected, rtol=1e-4, atol=1e-5)


def test_flow_other_prediction_types_agree(key):
    # x0-, eps- and score-predicting models on a flow schedule (alpha = 1 - sigma) give the
    # same run; the flow-velocity run is checked against diffusers above. epsilon/score
    # need sigma_max < 1: at sigma = 1 they carry no information about x0.
    sched = FlowSchedule.create(shift=3.0, sigmas=list(np.linspace(0.95, 0.02, 10)))
    noise = jnp.asarray(_noise())

    def run(p):
        method = Euler(num_inference_steps=10, prediction_type=p)
        return sample(key, method, sched, flow_gaussian_model(prediction_type=p), noise).samples

    ref = run("sample")
    for prediction_type in ("epsilon", "score"):
        np.testing.assert_allclose(run(prediction_type), ref, rtol=1e-4, atol=2e-5)


def test_flow_gaussian_closed_form():
    noise = jax.random.normal(jax.random.key(7), (4000, 1))
    method = Euler(num_inference_steps=100, prediction_type="flow")
    out = sample(
        jax.random.key(3), method, FlowSchedule.create(shift=3.0), flow_gaussian_model(), noise
    )
    x = np.asarray(out.samples)
    assert out.nfe == 100
    assert abs(x.mean() - MU) < 0.03 and abs(x.std() - STD) < 0.03


# --- bad inputs ------------------------------------------------------------------------
FLOW, FLOW3 = FlowSchedule.create(), FlowSchedule.create(sigmas=[0.9, 0.5, 0.1])


@pytest.mark.parametrize(
    "method, exc, field",
    [
        (lambda: Euler(num_inference_steps=0), ValueError, "num_inference_steps"),
        (lambda: Euler(num_inference_steps=1001), ValueError, "num_inference_steps"),
        (lambda: Euler(interpolation_type="cubic"), ValueError, "interpolation_type"),
        (lambda: Euler(final_sigmas_type="one"), ValueError, "final_sigmas_type"),
        (lambda: Euler(timestep_spacing="middle"), ValueError, "timestep_spacing"),
        (lambda: Euler(prediction_type="noise"), ValueError, "prediction_type"),
        (lambda: Euler(prediction_type="flow"), ValueError, "prediction_type"),
        (lambda: EulerAncestral(num_inference_steps=-1), ValueError, "num_inference_steps"),
    ],
)
def test_bad_inputs_discrete(method, exc, field):
    sched, _, _ = _schedule()
    # static fields are checked when the method is built, the rest when it plans
    with pytest.raises(exc, match=field):
        method().plan(sched)


@pytest.mark.parametrize(
    "method, sched, exc, field",
    [
        (lambda: EulerAncestral(), FLOW, TypeError, "schedule"),
        (lambda: Euler(prediction_type="v_prediction"), FLOW, ValueError, "prediction_type"),
        (lambda: Euler(interpolation_type="log_linear"), FLOW, ValueError, "interpolation_type"),
        (lambda: Euler(final_sigmas_type="sigma_min"), FLOW, ValueError, "final_sigmas_type"),
        (lambda: Euler(num_inference_steps=5), FLOW3, ValueError, "num_inference_steps"),
        (lambda: Euler(), object(), TypeError, "schedule"),
    ],
)
def test_bad_inputs_schedule(method, sched, exc, field):
    with pytest.raises(exc, match=field):
        method().plan(sched)
