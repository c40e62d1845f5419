import diffusers
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from diffusers.schedulers import scheduling_ddpm

from jaxdiff.samplers.ddpm import DDPM
from jaxdiff.samplers.driver import sample, step_keys
from jaxdiff.schedules.discrete import DiscreteSchedule
from tests.oracles import MU, STD, gaussian_model, patch_noise, run_diffusers

SHAPE = (4, 3, 5)  # NCHW-like: channels on axis 1, as diffusers splits learned variances


def _noise(shape=SHAPE):
    return np.asarray(jax.random.normal(jax.random.key(1), shape))


def _learned_model(base, variance_type, axis):
    """``base`` plus a variance half on ``axis``: ``v`` in (-1, 1) or a positive variance."""

    def model(x, t, context=None):
        values = jnp.tanh(x) * 0.9
        if variance_type == "learned":
            values = 0.02 * (1.0 + values)  # positive variances
        return jnp.concatenate([base(x, t, context), values], axis=axis)

    return model


def _both(
    key,
    monkeypatch,
    *,
    n=20,
    beta_schedule="linear",
    zero_snr=False,
    model=None,
    make_model=None,
    prediction_type="epsilon",
    betas=None,
    ours=None,
    **kw,
):
    """Our DDPM and diffusers' DDPMScheduler on the same model, noise and per-step noise.

    ``kw`` configure both; ``ours`` only jaxdiff (fields diffusers lacks, or overrides).
    Returns ``(ours, diffusers', diffusers' noise-call log)``.
    """
    if betas is not None:
        sched = DiscreteSchedule.create(betas=betas, rescale_betas_zero_snr=zero_snr)
        ref_kw = {"trained_betas": np.asarray(betas).tolist(), "num_train_timesteps": len(betas)}
    else:
        sched = DiscreteSchedule.create(beta_schedule, rescale_betas_zero_snr=zero_snr)
        ref_kw = {"beta_schedule": beta_schedule}
    if make_model is not None:
        model = make_model(sched)
    model = model or gaussian_model(sched.alphas_cumprod, prediction_type)
    ref = diffusers.DDPMScheduler(
        **{"clip_sample": False, **ref_kw, **kw},
        prediction_type=prediction_type,
        rescale_betas_zero_snr=zero_snr,
    )
    _, calls = patch_noise(monkeypatch, scheduling_ddpm, key, n, SHAPE)
    expected = run_diffusers(ref, model, _noise(), n)
    method = DDPM(num_inference_steps=n, prediction_type=prediction_type, **{**kw, **(ours or {})})
    got = sample(key, method, sched, model, jnp.asarray(_noise())).samples
    return np.asarray(got), expected, calls


# fixed_large_log: diffusers takes sqrt(log beta), NaN for every t > 0 (checked below);
# ours is fixed_large in log space, so it is compared with diffusers' fixed_large.
@pytest.mark.parametrize(
    "variance_type, ref_type",
    [
        ("fixed_small", "fixed_small"),
        ("fixed_small_log", "fixed_small_log"),
        ("fixed_large_log", "fixed_large"),
    ],
)
def test_fixed_variances_match_diffusers(key, monkeypatch, variance_type, ref_type):
    got, expected, calls = _both(
        key, monkeypatch, variance_type=ref_type, ours={"variance_type": variance_type}
    )
    assert len(calls) == 19  # leading spacing ends at t = 0, where no noise is drawn
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_diffusers_fixed_large_log_is_nan(key, monkeypatch):
    # Documents the deliberate difference named in jaxdiff/samplers/ddpm.py.
    sched = DiscreteSchedule.create("linear")
    ref = diffusers.DDPMScheduler(variance_type="fixed_large_log", clip_sample=False)
    patch_noise(monkeypatch, scheduling_ddpm, key, 3, SHAPE)
    assert np.isnan(run_diffusers(ref, gaussian_model(sched.alphas_cumprod), _noise(), 3)).all()


@pytest.mark.parametrize("variance_type", ["learned", "learned_range"])
def test_learned_variances_nchw_match_diffusers(key, monkeypatch, variance_type):
    # NCHW model output [B, 2C, W]: diffusers splits on axis 1, so variance_channel_axis=1.
    def model(sched):
        return _learned_model(gaussian_model(sched.alphas_cumprod), variance_type, axis=1)

    got, expected, _ = _both(
        key,
        monkeypatch,
        make_model=model,
        variance_type=variance_type,
        ours={"variance_channel_axis": 1},
    )
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_learned_range_nhwc_default_axis(key, monkeypatch):
    # Our NHWC run (variance on the last axis, per-step noise drawn in NHWC) is diffusers'
    # NCHW run on the transposed latents, model output and noise.
    n, sched = 10, DiscreteSchedule.create("linear")
    base = gaussian_model(sched.alphas_cumprod)
    nhwc = (SHAPE[0], SHAPE[2], SHAPE[1])
    noises = iter(
        [np.asarray(jax.random.normal(k, nhwc)).transpose(0, 2, 1) for k in step_keys(key, n)]
    )
    monkeypatch.setattr(
        scheduling_ddpm, "randn_tensor", lambda *a, **k: torch.from_numpy(next(noises).copy())
    )
    ref = diffusers.DDPMScheduler(variance_type="learned_range", clip_sample=False)
    expected = run_diffusers(ref, _learned_model(base, "learned_range", 1), _noise(), n)
    method = DDPM(num_inference_steps=n, variance_type="learned_range")
    got = sample(
        key,
        method,
        sched,
        _learned_model(base, "learned_range", -1),
        jnp.asarray(_noise()).transpose(0, 2, 1),
    ).samples
    np.testing.assert_allclose(np.asarray(got).transpose(0, 2, 1), expected, rtol=1e-4, atol=1e-5)


# Each spacing and each prediction type (pairs: one compile each). n = 7 does not divide
# T = 1000: trailing steps are then not T // n apart, and the previous timestep is the
# next planned one, as in diffusers.
@pytest.mark.parametrize(
    "spacing, prediction_type, offset, n",
    [
        ("leading", "epsilon", 1, 15),
        ("trailing", "v_prediction", 0, 15),
        ("linspace", "sample", 0, 15),
        ("trailing", "epsilon", 0, 7),
    ],
)
def test_spacings_and_predictions_match_diffusers(
    key, monkeypatch, spacing, prediction_type, offset, n
):
    got, expected, calls = _both(
        key,
        monkeypatch,
        n=n,
        timestep_spacing=spacing,
        prediction_type=prediction_type,
        steps_offset=offset,
    )
    # diffusers draws noise only while t > 0: linspace ends at t = 0.
    assert len(calls) == (n - 1 if spacing == "linspace" else n)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_score_prediction_matches_diffusers_epsilon(key, monkeypatch):
    # score = -eps / sigma_t (prediction.py); diffusers has no score type: run it on eps.
    sched = DiscreteSchedule.create("linear")
    eps_model = gaussian_model(sched.alphas_cumprod)
    sig = jnp.sqrt(1 - sched.alphas_cumprod)

    def score_model(x, t, c):
        return -eps_model(x, t, c) / sig[t.astype(jnp.int32)].reshape(-1, 1, 1)

    patch_noise(monkeypatch, scheduling_ddpm, key, 10, SHAPE)
    ref = diffusers.DDPMScheduler(clip_sample=False, timestep_spacing="trailing")
    expected = run_diffusers(ref, eps_model, _noise(), 10)
    method = DDPM(num_inference_steps=10, prediction_type="score", timestep_spacing="trailing")
    got = sample(key, method, sched, score_model, jnp.asarray(_noise())).samples
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_clip_sample_range_matches_diffusers(key, monkeypatch):
    got, expected, _ = _both(
        key, monkeypatch, prediction_type="sample", clip_sample=True, clip_sample_range=0.6
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # The clip is active: without it diffusers lands elsewhere.
    sched = DiscreteSchedule.create("linear")
    patch_noise(monkeypatch, scheduling_ddpm, key, 20, SHAPE)
    free = run_diffusers(
        diffusers.DDPMScheduler(clip_sample=False, prediction_type="sample"),
        gaussian_model(sched.alphas_cumprod, "sample"),
        _noise(),
        20,
    )
    assert not np.allclose(free, expected, atol=1e-3)


def test_thresholding_matches_diffusers_and_is_active(key, monkeypatch):
    mu = 1.1  # the 0.9 quantile of |x0| then lies strictly inside (1, 1.5) at most steps
    kw = {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1.5}
    sched = DiscreteSchedule.create("linear")
    model = gaussian_model(sched.alphas_cumprod, "sample", mu=mu)
    got, expected, _ = _both(key, monkeypatch, model=model, prediction_type="sample", **kw)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    thresholds = []

    def recording(x, t, c=None):  # concrete arrays: called from the torch loop only
        out = np.asarray(model(x, t, c)).reshape(SHAPE[0], -1)
        thresholds.append(np.clip(np.quantile(np.abs(out), 0.9, axis=1), 1.0, 1.5))
        return out.reshape(x.shape)

    patch_noise(monkeypatch, scheduling_ddpm, key, 20, SHAPE)
    ref = diffusers.DDPMScheduler(prediction_type="sample", clip_sample=False, **kw)
    np.testing.assert_allclose(run_diffusers(ref, recording, _noise(), 20), expected)
    s = np.stack(thresholds)
    assert np.mean((s > 1.01) & (s < 1.49)) > 0.5, s  # neither clip-to-1 nor capped


def test_custom_betas_match_diffusers(key, monkeypatch):
    betas = np.linspace(2e-4, 0.05, 200) ** 1.1
    got, expected, _ = _both(
        key, monkeypatch, betas=betas, variance_type="fixed_large", timestep_spacing="trailing"
    )
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variance_type", ["fixed_small", "learned_range"])
def test_zero_snr_trailing_v_prediction(key, monkeypatch, variance_type):
    # First step at alpha_bar_t = 0 exactly: x0 = -v, the x_t coefficient and
    # alpha_t' are 0, beta_t' = 1 (log beta_t' = 0 for learned_range); all finite.
    def model(sched):
        base = gaussian_model(sched.alphas_cumprod, "v_prediction")
        return base if variance_type == "fixed_small" else _learned_model(base, variance_type, 1)

    got, expected, _ = _both(
        key,
        monkeypatch,
        beta_schedule="scaled_linear",
        zero_snr=True,
        timestep_spacing="trailing",
        prediction_type="v_prediction",
        make_model=model,
        variance_type=variance_type,
        ours={"variance_channel_axis": 1},
    )
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_clip_range_traced_no_recompile(key):
    sched = DiscreteSchedule.create("linear")
    model = gaussian_model(sched.alphas_cumprod, "sample")
    noise = jnp.asarray(_noise())
    fn = jax.jit(lambda m: sample(key, m, sched, model, noise).samples)
    a = fn(
        DDPM(
            num_inference_steps=5, prediction_type="sample", clip_sample=True, clip_sample_range=0.5
        )
    )
    b = fn(
        DDPM(
            num_inference_steps=5, prediction_type="sample", clip_sample=True, clip_sample_range=2.0
        )
    )
    assert fn._cache_size() == 1
    assert not np.allclose(a, b)


def test_single_step_eager_is_posterior_sample(key):
    # Eager (unjitted) step against Ho et al. eq. 7 in float64 with strided alpha_t'.
    sched = DiscreteSchedule.create("linear")
    method = DDPM(num_inference_steps=10, variance_type="fixed_large")
    plan = method.plan(sched)
    row = jax.tree.map(lambda a: a[3], plan.steps)
    x, eps = _noise(), 0.3 * _noise()[::-1]
    _, got = method.step(key, (), jnp.asarray(x), jnp.asarray(eps), row)
    ab = np.asarray(sched.alphas_cumprod, np.float64)
    t, p = int(plan.timesteps[3]), int(plan.timesteps[4])
    assert t - p == 100
    a_t, a_p = ab[t], ab[p]
    x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
    mean = (np.sqrt(a_p) * (1 - a_t / a_p) * x0 + np.sqrt(a_t / a_p) * (1 - a_p) * x) / (1 - a_t)
    z = np.asarray(jax.random.normal(key, SHAPE))
    np.testing.assert_allclose(got, mean + np.sqrt(1 - a_t / a_p) * z, rtol=1e-4, atol=1e-5)


def test_gaussian_closed_form(key):
    sched = DiscreteSchedule.create("linear")
    noise = jax.random.normal(jax.random.key(1), (4000, 1))
    out = sample(
        key, DDPM(num_inference_steps=100), sched, gaussian_model(sched.alphas_cumprod), noise
    )
    x = np.asarray(out.samples)
    assert abs(x.mean() - MU) < 0.03 and abs(x.std() - STD) < 0.03, (x.mean(), x.std())


def test_bad_inputs(key):
    sched = DiscreteSchedule.create("linear")
    model = gaussian_model(sched.alphas_cumprod)
    with pytest.raises(ValueError, match="variance_type"):
        DDPM(variance_type="fixed_medium").plan(sched)
    # names are case-insensitive and stored in lower case (issue 12: no later "unreachable")
    assert DDPM(variance_type="FIXED_SMALL").variance_type == "fixed_small"
    with pytest.raises(TypeError, match="variance_type"):
        DDPM(variance_type=3).plan(sched)
    for n in (0, 1001):
        with pytest.raises(ValueError, match="num_inference_steps"):
            DDPM(num_inference_steps=n).plan(sched)
    with pytest.raises(ValueError, match="prediction_type"):
        DDPM(prediction_type="flow").plan(sched)
    with pytest.raises(ValueError, match="timestep_spacing"):
        DDPM(timestep_spacing="uniform").plan(sched)
    # learned variances need 2C channels on variance_channel_axis
    with pytest.raises(ValueError, match="variance_channel_axis"):
        sample(
            key,
            DDPM(num_inference_steps=5, variance_type="learned_range"),
            sched,
            model,
            jnp.zeros(SHAPE),
        )
    with pytest.raises(ValueError, match="variance_channel_axis"):
        sample(
            key,
            DDPM(num_inference_steps=5, variance_type="learned", variance_channel_axis=5),
            sched,
            model,
            jnp.zeros(SHAPE),
        )
