"""Test oracles: an exact Gaussian denoiser and a diffusers (PyTorch) sampling loop.

For data ``x0 ~ N(mu, s^2 I)`` and ``x_t = alpha x0 + sigma eps`` the posterior mean is
``E[x0 | x_t] = mu + alpha s^2 / (alpha^2 s^2 + sigma^2) (x_t - alpha mu)``, so the
exact epsilon, v and x0 predictions are known in closed form. The model maps a
(possibly fractional) training timestep to ``alpha_bar`` by linear interpolation of
``sigma = sqrt((1 - alpha_bar) / alpha_bar)`` in ``t``, as diffusers' Euler-type
schedulers do, so it is exact at the timesteps every scheduler visits.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch

MU, STD = 0.7, 0.5


def gaussian_model(alphas_cumprod, prediction_type="epsilon", mu=MU, std=STD, input_scaled=False):
    """JAX ``model(x, t, context)`` returning the exact prediction for Gaussian data.

    ``input_scaled=True`` means x is the sigma-space input divided by sqrt(1+sigma^2)
    (what Euler/Heun feed), which is exactly the VP ``x_t``: same formula.
    """
    ab = jnp.asarray(alphas_cumprod, jnp.float32)
    sig = jnp.sqrt((1 - ab) / ab)

    def model(x, t, context=None):
        s = jnp.interp(t, jnp.arange(ab.shape[0], dtype=jnp.float32), sig)
        a_bar = 1.0 / (1.0 + s**2)
        shape = (-1,) + (1,) * (x.ndim - 1)
        alpha = jnp.sqrt(a_bar).reshape(shape)
        sigma = jnp.sqrt(1 - a_bar).reshape(shape)
        x0 = mu + alpha * std**2 / (alpha**2 * std**2 + sigma**2) * (x - alpha * mu)
        eps = (x - alpha * x0) / sigma
        if context is not None:
            x0 = x0 + 0.1 * context.reshape(x.shape[0], -1)[:, :1].reshape(shape)
            eps = (x - alpha * x0) / sigma
        if prediction_type == "epsilon":
            return eps
        if prediction_type == "sample":
            return x0
        if prediction_type == "v_prediction":
            return alpha * eps - sigma * x0
        raise ValueError(prediction_type)

    return model


def torch_model(jax_model):
    """Wrap a JAX model for a torch loop (same numbers, converted through numpy)."""

    def model(x, t):
        t = np.full((x.shape[0],), float(t), np.float32)
        out = jax_model(jnp.asarray(x.numpy()), jnp.asarray(t))
        return torch.from_numpy(np.asarray(out).copy())

    return model


def patch_noise(monkeypatch, module, key, num_calls, shape):
    """Make ``module.randn_tensor`` return the noise jaxdiff draws at each call, in order.

    jaxdiff's driver draws ``normal(step_keys(key, K)[k], shape)`` at model call ``k``;
    the patched diffusers scheduler gets them in the same order. Returns the call log.
    """
    from jaxdiff.samplers.driver import step_keys

    keys = step_keys(key, num_calls)
    noises = [np.asarray(jax.random.normal(k, shape, jnp.float32)) for k in keys]
    calls = []

    def fake_randn(shape_, generator=None, device=None, dtype=None, layout=None):
        i = len(calls)
        calls.append(i)
        return torch.from_numpy(noises[i].copy()).to(dtype or torch.float32)

    monkeypatch.setattr(module, "randn_tensor", fake_randn)
    return noises, calls


def run_diffusers(scheduler, jax_model, noise, num_inference_steps, step_kwargs=None):
    """Run a diffusers scheduler loop; return final samples as numpy float32."""
    model = torch_model(jax_model)
    scheduler.set_timesteps(num_inference_steps)
    x = torch.from_numpy(np.asarray(noise, np.float32).copy()) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)
        out = model(x_in, t)
        x = scheduler.step(out, t, x, **(step_kwargs or {})).prev_sample
    return x.numpy()
