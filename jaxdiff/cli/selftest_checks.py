"""The checks of ``jaxdiff selftest``: one tiny check per subsystem, each against a known answer.

Every check takes no argument, returns a one-line detail string and raises when something
is wrong (:class:`CheckFailed` for a wrong number, or whatever the exercised code raises).
:data:`CHECKS` lists them in the order they run, as ``(name, check)`` pairs. They need only
the core dependencies (no torch, diffusers or POT) and run on any backend; their arrays
are tiny, so compilation dominates: about half a minute for all of them on a 2-core CPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CHECKS", "CheckFailed"]


class CheckFailed(AssertionError):
    """A selftest result differs from its closed form or reference."""


def _require(ok, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


def _params_from_shapes(init_fn, *args):
    """Random float32 parameters shaped like ``init_fn(key, *args)["params"]``.

    Only the shapes are traced (``jax.eval_shape``): compiling a network's random
    initialisers takes far longer on CPU than the checks themselves (``jax.random`` on
    4-D convolution kernels compiles for seconds). Kernels are ``N(0, 1 / fan_in)``, norm
    scales ``N(1, 0.1^2)``, every other leaf (biases) ``N(0, 0.01^2)``; NumPy, seed 0.
    """
    shapes = jax.eval_shape(init_fn, jax.random.key(0), *args)["params"]
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = path[-1].key
        if name == "scale":
            return jnp.asarray(1 + 0.1 * rng.standard_normal(leaf.shape), jnp.float32)
        fan_in = int(np.prod(leaf.shape[:-1])) if name == "kernel" else 1e4
        return jnp.asarray(rng.standard_normal(leaf.shape) / np.sqrt(fan_in), jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def check_schedules() -> str:
    """Every named discrete schedule: ``alphas_cumprod`` in (0, 1] and decreasing."""
    from jaxdiff.schedules import NoiseScheduleType, create_noise_scheduler

    names = []
    for kind in NoiseScheduleType:
        if kind in (NoiseScheduleType.CUSTOM, NoiseScheduleType.FLOW):
            continue
        ab = np.asarray(create_noise_scheduler(kind).alphas_cumprod, np.float64)
        _require(
            np.all((ab > 0) & (ab <= 1)),
            f"{kind.value}: alphas_cumprod spans [{ab.min():.3g}, {ab.max():.3g}], not in (0, 1]",
        )
        _require(np.all(np.diff(ab) < 0), f"{kind.value}: alphas_cumprod is not decreasing")
        names.append(kind.value)
    return f"{len(names)} schedules ({', '.join(names)}): alphas_cumprod in (0, 1], decreasing"


# method -> inference steps: enough to reach the data moments within the tolerance with a
# margin of about half of it (the run costs milliseconds; compilation dominates)
_SAMPLER_STEPS = {"ddim": 50, "dpm_solver": 20, "euler": 50, "heun": 20}
_GAUSS_MEAN, _GAUSS_STD, _MOMENT_TOL = 0.7, 0.5, 0.05


def check_samplers() -> str:
    """1-D ``N(0.7, 0.5^2)`` sampled with the exact denoiser reaches its mean and std."""
    from jaxdiff.data.gaussian_mixture import GaussianMixture
    from jaxdiff.samplers import create_sampler

    data = GaussianMixture(
        weights=jnp.ones(1), means=jnp.full((1, 1), _GAUSS_MEAN), stds=jnp.full(1, _GAUSS_STD)
    )
    latents = jnp.asarray(np.random.default_rng(0).standard_normal((2000, 1)), jnp.float32)
    parts = []
    for method, steps in _SAMPLER_STEPS.items():
        sampler = create_sampler(
            "linear", method, num_inference_steps=steps, timestep_spacing="trailing"
        )
        res = sampler.sample(
            data.epsilon_model(sampler.scheduler.alphas_cumprod), latents, key=jax.random.key(1)
        )
        x = np.asarray(res.samples, np.float64)
        mean, std = x.mean(), x.std()
        _require(res.all_finite, f"{method}: non-finite model output")
        _require(
            abs(mean - _GAUSS_MEAN) < _MOMENT_TOL and abs(std - _GAUSS_STD) < _MOMENT_TOL,
            f"{method} ({steps} steps): mean {mean:.3f} std {std:.3f}, want "
            f"{_GAUSS_MEAN} {_GAUSS_STD} within {_MOMENT_TOL}",
        )
        parts.append(f"{method} {mean:.3f}/{std:.3f}")
    return f"mean/std (want {_GAUSS_MEAN}/{_GAUSS_STD}): " + ", ".join(parts)


def check_ot() -> str:
    """1-D Sinkhorn at small epsilon: marginals hold, cost near the sorted matching's."""
    from jaxdiff.ot import sinkhorn

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 1)).astype(np.float32)
    y = (rng.uniform(size=(16, 1)) + 0.5).astype(np.float32)
    exact = float(np.mean((np.sort(x[:, 0]) - np.sort(y[:, 0])) ** 2))  # uniform weights

    @jax.jit
    def solve(x, y):
        res = sinkhorn(x, y, epsilon=1e-3, threshold=1e-4, max_iterations=20_000)
        plan, uniform = res.matrix, jnp.full(16, 1 / 16)
        marginal = jnp.maximum(
            jnp.abs(plan.sum(1) - uniform).sum(), jnp.abs(plan.sum(0) - uniform).sum()
        )
        return res.converged, res.n_iters, res.primal_cost, marginal

    converged, n_iters, cost, marginal = (float(v) for v in solve(x, y))
    _require(converged, f"not converged after {n_iters:.0f} iterations")
    _require(marginal < 1e-3, f"marginal error (1-norm) {marginal:.2g} >= 1e-3")
    _require(abs(cost - exact) < 1e-3, f"cost {cost:.5f}, sorted matching {exact:.5f}")
    return (
        f"16 points, epsilon 1e-3: cost {cost:.5f} vs sorted matching {exact:.5f}, "
        f"marginal error {marginal:.1e}, {n_iters:.0f} iterations"
    )


def check_kernels() -> str:
    """The Pallas ``lse_dot`` kernel (interpret mode) against its jnp reference.

    (``lse_dot_triton``, the other kernel, needs jax-triton and a GPU: not checked here.)
    """
    from jaxdiff.kernels import lse_dot_pallas, lse_dot_reference

    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((n, 3)).astype(np.float32) for n in (20, 40))
    h = rng.standard_normal(40).astype(np.float32)
    out = np.asarray(lse_dot_pallas(x, y, h, block_n=16, block_m=16, interpret=True))
    ref = np.asarray(jax.jit(lse_dot_reference)(x, y, h))
    _require(out.shape == (20,), f"output shape {out.shape}, want (20,)")
    err = float(np.max(np.abs(out - ref) / (1 + np.abs(ref))))
    _require(err < 1e-5, f"relative error {err:.2g} >= 1e-5")
    return f"lse_dot_pallas [20x40, d=3, 16x16 tiles] vs reference: max rel. error {err:.1e}"


def _tiny_unet():
    """``(config, params)`` of a one-level, 8-channel UNet with attention (8x8 inputs)."""
    from jaxdiff.nets import HighResModelConfig, UNet

    cfg = HighResModelConfig(
        in_channels=1,
        out_channels=1,
        base_channels=8,
        channel_mult=(1,),
        num_res_blocks=1,
        attention_levels=(0,),
        norm_num_groups=4,
        attention_head_dim=4,
    )
    return cfg, _params_from_shapes(UNet(cfg).init, jnp.zeros((1, 8, 8, 1)), jnp.ones(1))


def check_networks() -> str:
    """A tiny UNet's forward pass: output shape and finiteness."""
    from jaxdiff.nets import UNet

    cfg, params = _tiny_unet()
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 8, 8, 1)), jnp.float32)
    out = np.asarray(jax.jit(UNet(cfg).apply)({"params": params}, x, jnp.array([10.0, 500.0])))
    _require(out.shape == x.shape, f"output shape {out.shape}, want {x.shape}")
    _require(np.isfinite(out).all(), "output has non-finite entries")
    count = sum(p.size for p in jax.tree.leaves(params))
    return f"UNet ({count} parameters) on [2, 8, 8, 1]: output {tuple(out.shape)}, finite"


def check_interop() -> str:
    """UNet parameters -> diffusers state dict -> parameters, bitwise equal."""
    from jaxdiff.interop import (
        config_to_diffusers,
        unet_from_diffusers,
        unet_to_diffusers_state_dict,
    )

    cfg, params = _tiny_unet()
    state = unet_to_diffusers_state_dict(params, cfg)
    _, back = unet_from_diffusers(state, config=config_to_diffusers(cfg))
    _require(jax.tree.structure(back) == jax.tree.structure(params), "parameter tree changed")
    same = [
        np.asarray(a).tobytes() == np.asarray(b).tobytes()
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back), strict=True)
    ]
    _require(all(same), f"{same.count(False)} of {len(same)} arrays changed")
    return f"{len(state)} diffusers tensors, round trip bitwise equal"


_FIT_STEPS = 4


def _fit(run_dir=None):
    """Four AdamW steps of flow matching on a tiny MLP; returns the ``FitResult``."""
    from jaxdiff.nets import MLP, bind
    from jaxdiff.train import FlowMatchingObjective, TrainingConfig, array_batches, fit

    x = np.random.default_rng(0).normal(size=(32, 2)).astype(np.float32)
    net = MLP(hidden_dim=16, depth=1, time_embed_dim=4)
    params = _params_from_shapes(net.init, x[:1], jnp.zeros(1))
    data, _ = array_batches({"x": x}, 16, seed=0)
    cfg = TrainingConfig(
        batch_size=16, num_steps=_FIT_STEPS, log_interval=2, learning_rate=1e-3, progress=False
    )
    objective = FlowMatchingObjective.create()
    return fit(jax.random.key(0), params, bind(net).apply_fn, objective, data, cfg, run_dir=run_dir)


def check_training() -> str:
    """``fit`` runs a few steps with finite losses."""
    result = _fit()
    losses = [r["loss"] for r in result.history]
    _require(int(result.state.step) == _FIT_STEPS, f"ended at step {int(result.state.step)}")
    _require(losses and np.all(np.isfinite(losses)), f"losses {losses}")
    shown = ", ".join(f"{v:.4f}" for v in losses)
    return f"{_FIT_STEPS} AdamW steps of flow matching on an MLP, logged losses {shown} (finite)"


def check_checkpoint() -> str:
    """``fit`` with a run directory saves a checkpoint; a second call resumes it."""
    with tempfile.TemporaryDirectory() as tmp:
        first = _fit(run_dir=tmp)
        saved = sorted(p.name for p in (Path(tmp) / "checkpoints").iterdir())
        _require(saved, f"no checkpoint under {tmp}/checkpoints")
        again = _fit(run_dir=tmp)
    _require(
        again.start_step == _FIT_STEPS and again.history == [],
        f"resumed at step {again.start_step} with {len(again.history)} new records",
    )
    pairs = zip(
        jax.tree.leaves(first.state.params), jax.tree.leaves(again.state.params), strict=True
    )
    _require(all(np.array_equal(a, b) for a, b in pairs), "resumed parameters differ")
    return f"saved {saved}, resumed at step {again.start_step} with equal parameters"


def _exact_x0(key, x_t, t, context):
    """The counting model that knows the data: it returns ``x0``, passed as the context."""
    del key, x_t, t
    return context


def check_counting() -> str:
    """Skellam bridge: ``E[x_t] = x0 + t (x1 - x0)`` (linear), exact-model sampling healthy."""
    from jaxdiff.counting import ConstantM, SkellamBridge

    x0, x1 = np.array([0, 5, 10, 2], np.int32), np.array([7, 1, 10, 0], np.int32)
    reps, t, slack = 2000, 0.4, 2
    bridge = SkellamBridge(ConstantM(slack), schedule_type="linear")
    rows0, rows1 = np.tile(x0, (reps, 1)), np.tile(x1, (reps, 1))

    @jax.jit
    def run(key):
        k_fwd, k_rev = jax.random.split(key)
        _, x_t, _ = bridge(k_fwd, rows0, rows1, t)
        out = bridge.sample(k_rev, rows1[:8], _exact_x0, 4, context=rows0[:8])
        return x_t.astype(jnp.float32).mean(0), out

    mean, out = run(jax.random.key(0))
    mean, diff = np.asarray(mean, np.float64), (x1 - x0).astype(np.float64)
    want = x0 + t * diff
    sem = np.sqrt(t * (1 - t) * (np.abs(diff) + 2 * slack) / reps)  # sqrt(Var[x_t] / reps)
    _require(np.all(np.abs(mean - want) < 5 * sem), f"E[x_t] {mean}, closed form {want}")
    _require(bool(out.all_finite), "health: all_finite is false")
    _require(bool(out.in_range), f"health: in_range is false (max count {int(out.max_count)})")
    _require(np.array_equal(out.samples, rows0[:8]), "exact-model samples differ from x0")
    return (
        f"E[x_t] {np.round(mean, 2).tolist()} vs {np.round(want, 2).tolist()}; "
        "reverse samples = x0, all_finite, in_range"
    )


CHECKS = (
    ("schedules", check_schedules),
    ("samplers", check_samplers),
    ("ot", check_ot),
    ("kernels", check_kernels),
    ("networks", check_networks),
    ("interop", check_interop),
    ("training", check_training),
    ("checkpoint", check_checkpoint),
    ("counting", check_counting),
)
