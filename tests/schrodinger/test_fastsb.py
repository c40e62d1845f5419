"""FastSB-OT's facade: the seed's usage, every preset on Gaussian data with the exact score,
the noise routes, OT health and profiling, the self-check, the compilation cache, bad input."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.schrodinger import fastsb_check
from jaxdiff.schrodinger.fastsb import (
    FastSBOTConfig,
    FastSBOTSolver,
    NoisePredictorToScoreWrapper,
    PersistentKernelCache,
    make_schedule,
)
from jaxdiff.schrodinger.fastsb_check import CheckItem, SelfCheckReport
from tests.schrodinger.gaussian import gaussian_eps_model, pf_map

MU, C = 0.5, 0.3
LINEAR = make_schedule("linear")
COSINE = make_schedule("cosine")
KEY = jax.random.key(0)
SHAPE = (2000, 2)
# three Monte-Carlo standard errors of the mean and the std of 4000 draws of N(MU, C^2)
MEAN_TOL, STD_TOL = 3 * C / np.sqrt(4000), 3 * C / np.sqrt(2 * 4000)


def exact_score(schedule, mu=MU, c=C):
    """``score(x [B, d], t [B]) = -(x - alpha mu) / v_t`` for data ``N(mu, c^2 I)``."""

    def score(x, t):
        a, s = schedule.alpha(t)[:, None], schedule.sigma(t)[:, None]
        return -(x - a * mu) / (a**2 * c**2 + s**2)

    return score


def _map_error(result, schedule, t_min=1e-3):
    want = pf_map(schedule, MU, C, result.noise, t_min)
    return float(jnp.sqrt(jnp.mean((result.samples - want) ** 2)))


def test_the_seed_readme_usage_runs(capsys):
    schedule = make_schedule("linear")
    solver = FastSBOTSolver(
        exact_score(schedule), schedule, config=FastSBOTConfig(quality="balanced")
    )
    result = solver.sample(SHAPE, key=KEY)
    x = np.asarray(result.samples)
    assert x.shape == SHAPE and x.dtype == np.float32 and bool(result.all_finite)
    assert result.nfe == 100 and result.ot_converged is None and result.profile is None
    # + the balanced preset's step error (PRESETS)
    assert abs(x.mean() - MU) < MEAN_TOL and abs(x.std() - C) < STD_TOL + 5e-4, (x.mean(), x.std())
    # the seed's verbose call: a progress bar over the model calls and a summary line
    config = FastSBOTConfig(quality="draft")
    schedule = make_schedule("cosine", num_timesteps=config.num_timesteps)
    FastSBOTSolver(exact_score(schedule), schedule, config=config).sample(
        (8, 4), key=KEY, verbose=True
    )
    out = capsys.readouterr()
    assert "FastSB-OT [draft]: 10 heun steps, 20 model calls" in out.out
    assert "all finite" in out.out and "sampling" in out.err


PRESETS = [  # name, steps, bound on the RMS error to the exact PF-ODE map (measured / ~1.4)
    ("draft", 10, 1e-2),
    ("fast", 25, 2e-3),
    ("balanced", 50, 5e-4),
    ("ultra", 100, 1.5e-4),
    ("extreme", 200, 5e-5),
]


@pytest.mark.parametrize("name, steps, bound", PRESETS, ids=[p[0] for p in PRESETS])
def test_every_preset_reaches_the_data_law(name, steps, bound):
    config = FastSBOTConfig.from_preset(name)
    assert (config.num_timesteps, config.base_step) == (steps, "heun")
    assert config.use_ot_correction is False and config.langevin_steps == 0  # issue 14 §4
    result = FastSBOTSolver(exact_score(COSINE), COSINE, config=config).sample(SHAPE, key=KEY)
    x = np.asarray(result.samples)
    assert result.nfe == 2 * steps and bool(result.all_finite)
    # Monte-Carlo error plus the step's: |std(a) - std(b)| <= RMS(a - b) <= bound; the
    # original's sample() turns this std of 0.3 into 1.215
    assert abs(x.mean() - MU) < MEAN_TOL + bound and abs(x.std() - C) < STD_TOL + bound
    assert _map_error(result, COSINE) < bound


def test_explicit_fields_override_the_preset():
    config = FastSBOTConfig(quality="ultra", num_timesteps=7, base_step="DDIM")
    assert (config.quality, config.num_timesteps, config.base_step) == ("ultra", 7, "ddim")
    assert FastSBOTConfig().quality == "balanced"


def test_noise_wrapper_and_predicts_noise_route_give_the_score_models_samples():
    eps_model = gaussian_eps_model(LINEAR, MU, C)

    class NoiseNet:
        predicts_noise = True

        def __call__(self, x, t):
            return eps_model(x, t)

    config = FastSBOTConfig(quality="fast")
    runs = {
        name: FastSBOTSolver(model, LINEAR, config=config).sample(SHAPE, key=KEY).samples
        for name, model in (
            ("score", exact_score(LINEAR)),
            ("wrapper", NoisePredictorToScoreWrapper(eps_model, LINEAR)),
            ("predicts_noise", NoiseNet()),
        )
    }
    np.testing.assert_allclose(runs["wrapper"], runs["score"], atol=2e-5)
    np.testing.assert_allclose(runs["predicts_noise"], runs["score"], atol=2e-5)
    # the wrapper is -eps / sigma, with sigma floored at sqrt(clamp) = 1e-4
    x, t = jnp.ones((3, 2)), jnp.array([0.5, 1e-3, 1e-9], jnp.float32)
    wrapped = NoisePredictorToScoreWrapper(eps_model, LINEAR)(x, t)
    np.testing.assert_allclose(wrapped[:2], exact_score(LINEAR)(x, t)[:2], rtol=1e-5)
    assert float(LINEAR.sigma(t[2])) < 1e-4
    np.testing.assert_allclose(wrapped[2], -eps_model(x, t)[2] / 1e-4, rtol=1e-5)


def test_ot_correction_with_reference_reports_per_step_health_and_profile(capsys):
    # the model believes std 0.6, the reference samples have the true std 0.3
    biased = exact_score(COSINE, c=0.6)
    reference = MU + C * jax.random.normal(jax.random.key(7), (1000, 2))
    config = FastSBOTConfig(
        quality="draft",
        use_ot_correction=True,
        epsilon=0.05,
        relative_epsilon=False,
        ot_weight=0.5,
        ot_weight_schedule="constant",
        profile=True,
    )
    plain = FastSBOTSolver(biased, COSINE, config=FastSBOTConfig(quality="draft"))
    x_plain = float(plain.sample((500, 2), key=KEY).samples.std())
    result = FastSBOTSolver(biased, COSINE, config=config).sample(
        (500, 2), key=KEY, reference=reference, verbose=True
    )
    assert result.nfe == 20 and bool(result.all_finite)
    assert result.ot_converged.shape == (10,) and bool(result.ot_converged.all())
    np.testing.assert_allclose(result.ot_epsilon, 0.05, rtol=1e-6)
    assert float(result.ot_error.max()) < config.ot_threshold
    assert abs(float(result.samples.std()) - C) < abs(x_plain - C) / 3, x_plain
    p = result.profile
    assert p.compile_seconds > 0 and p.run_seconds > 0 and p.program_bytes > 0
    assert p.seconds_per_step == pytest.approx(p.run_seconds / 10)
    assert p.peak_bytes_in_use is None or p.peak_bytes_in_use > 0  # None on CPU
    assert "OT converged at 10/10 steps" in capsys.readouterr().out
    # the defaults: epsilon relative to each step's mean cost (adaptive), weight sigma_t;
    # a Sinkhorn cut off after 2 iterations is reported per step, not raised
    config = FastSBOTConfig(quality="draft", use_ot_correction=True, ot_max_iterations=2)
    cut = FastSBOTSolver(biased, COSINE, config=config).sample(
        (200, 2), key=KEY, reference=reference
    )
    eps = np.asarray(cut.ot_epsilon)
    assert eps.shape == (10,) and eps.min() > 0 and eps.max() > 2 * eps.min()
    assert not bool(cut.ot_converged.any()) and bool(cut.all_finite)
    assert float(cut.ot_error.min()) > config.ot_threshold


def test_kinetic_langevin_rows_add_model_calls_and_keep_the_law():
    config = FastSBOTConfig(quality="draft", langevin_steps=1, momentum_alpha=0.5)
    result = FastSBOTSolver(exact_score(COSINE), COSINE, config=config).sample(SHAPE, key=KEY)
    x = np.asarray(result.samples)
    assert result.nfe == 10 * 3  # two Heun rows and one corrector row per step
    assert abs(x.mean() - MU) < MEAN_TOL and abs(x.std() - C) < STD_TOL, (x.mean(), x.std())


def test_seed_time_grid_mixed_precision_and_clipping():
    score = exact_score(COSINE)
    seed_grid = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
    result = FastSBOTSolver(score, COSINE).sample((16, 2), key=KEY, timesteps=seed_grid)
    np.testing.assert_allclose(result.timesteps, [1.0, 0.8, 0.6, 0.4, 0.2, 1e-3], rtol=1e-6)
    assert result.nfe == 10
    full = FastSBOTSolver(score, COSINE, config=FastSBOTConfig(quality="draft"))
    half = FastSBOTSolver(
        score, COSINE, config=FastSBOTConfig(quality="draft", use_mixed_precision=True)
    )
    a, b = full.sample(SHAPE, key=KEY), half.sample(SHAPE, key=KEY)
    assert b.samples.dtype == b.noise.dtype == jnp.bfloat16
    # the state is float32: one bf16 rounding of the noise and of the result, no drift
    err = float(jnp.max(jnp.abs(b.samples.astype(jnp.float32) - a.samples)))
    assert 0 < err < 2e-2, err
    wide = exact_score(COSINE, mu=0.9)
    clip = FastSBOTConfig(quality="draft", clip_samples=True)
    assert (
        float(FastSBOTSolver(wide, COSINE, config=clip).sample(SHAPE, key=KEY).samples.max()) <= 1.0
    )
    assert (
        float(
            FastSBOTSolver(wide, COSINE, config=FastSBOTConfig(quality="draft"))
            .sample(SHAPE, key=KEY)
            .samples.max()
        )
        > 1.0
    )


def test_nan_guard_reports_the_first_bad_model_call():
    score = exact_score(COSINE)

    def bad(x, t):
        return jnp.where(t[:, None] < 0.5, jnp.nan, score(x, t))

    result = FastSBOTSolver(bad, COSINE, config=FastSBOTConfig(quality="draft")).sample(
        (8, 2), key=KEY
    )
    assert not bool(result.all_finite)
    assert 0 < int(result.first_nonfinite_step) < result.nfe


def test_self_check_passes_and_its_slope_check_fails_with_a_wrong_formula(monkeypatch):
    solver = FastSBOTSolver(exact_score(LINEAR), LINEAR)
    report = solver.self_check(KEY)
    assert report.passed, str(report)
    names = [item.name for item in report.items]
    assert names == [
        "sinkhorn_marginals",
        "gaussian_plan_slope",
        "plan_symmetry",
        "fisher_fp32_vs_float64",
        "fisher_bf16_vs_float64",
    ]
    assert report["gaussian_plan_slope"].value < 2e-3
    wrong = {
        "brenier": lambda s0, s1, eps: s0 * s1,  # the epsilon -> 0 limit
        "epsilon_not_halved": lambda s0, s1, eps: (
            0.5 * np.sqrt(4 * s0**2 * s1**2 + eps**2) - eps / 2
        ),
    }
    for formula in wrong.values():
        monkeypatch.setattr(fastsb_check, "gaussian_entropic_cross_covariance", formula)
        bad = solver.self_check(KEY)
        assert not bad.passed and not bad["gaussian_plan_slope"].passed
        assert all(item.passed for item in bad.items if item.name != "gaussian_plan_slope")


def test_python_m_selftest_exit_status(monkeypatch, capsys):
    import jaxdiff.cli.selftest as cli_selftest
    from jaxdiff import selftest

    monkeypatch.setattr(cli_selftest, "run_selftest", lambda: True)
    assert selftest.main() == 0
    assert "FastSB-OT self-check passed: 5/5" in capsys.readouterr().out
    monkeypatch.setattr(cli_selftest, "run_selftest", lambda: False)
    assert selftest.main() == 1
    monkeypatch.setattr(cli_selftest, "run_selftest", lambda: True)
    failing = SelfCheckReport((CheckItem("x", False, 1.0, 0.1, "forced"),))
    monkeypatch.setattr(fastsb_check, "run_self_check", lambda key: failing)
    assert selftest.main() == 1


def test_persistent_kernel_cache_writes_entries_in_a_subprocess(tmp_path):
    code = textwrap.dedent(
        f"""
        import jax, jax.numpy as jnp
        from jaxdiff.schrodinger.fastsb import PersistentKernelCache
        cache = PersistentKernelCache()
        path = cache.enable({str(tmp_path / "cache")!r}, min_compile_time_secs=0)
        assert cache.directory == path
        jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((8, 8))).block_until_ready()
        print(len(cache.entries()))
        """
    )

    def run():
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, proc.stderr
        return int(proc.stdout.split()[-1])

    first = run()
    assert first >= 1
    assert run() == first  # the second process read the entries back: nothing new written
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert sum(name.endswith("-cache") for name in files) == first


def _bad_calls():
    solver = FastSBOTSolver(exact_score(COSINE), COSINE, config=FastSBOTConfig(quality="draft"))
    ot = FastSBOTSolver(
        exact_score(COSINE), COSINE, config=FastSBOTConfig(quality="draft", use_ot_correction=True)
    )
    tiny = FastSBOTConfig(quality="draft", use_ot_correction=True, memory_limit_ot_mb=1e-6)
    ref = jnp.ones((16, 2))
    return [
        (ValueError, r"quality='fastest'.*'balanced'", lambda: FastSBOTConfig(quality="fastest")),
        (ValueError, "unknown", lambda: FastSBOTConfig.from_preset("unknown")),
        (ValueError, "num_timesteps", lambda: FastSBOTConfig(num_timesteps=0)),
        (ValueError, "base_step", lambda: FastSBOTConfig(base_step="rk4")),
        (ValueError, "epsilon", lambda: FastSBOTConfig(epsilon=-1.0)),
        (ValueError, "momentum_alpha", lambda: FastSBOTConfig(momentum_alpha=1.0)),
        (ValueError, "ot_weight", lambda: FastSBOTConfig(ot_weight=2.0)),
        (ValueError, "langevin_steps", lambda: FastSBOTConfig(langevin_steps=-1)),
        (ValueError, "memory_limit_ot_mb", lambda: FastSBOTConfig(memory_limit_ot_mb=0.0)),
        (TypeError, "use_mixed_precision", lambda: FastSBOTConfig(use_mixed_precision="yes")),
        (TypeError, "sliced_ot_projections", lambda: FastSBOTConfig(sliced_ot_projections=1.5)),
        (
            ValueError,
            r"quadratic.*supported: \['linear', 'cosine'\]",
            lambda: make_schedule("quadratic"),
        ),
        (ValueError, "supported", lambda: make_schedule("karras")),
        (TypeError, "shape", lambda: solver.sample("8,2", key=KEY)),
        (ValueError, r"shape\[1\]", lambda: solver.sample((8, 0), key=KEY)),
        (TypeError, r"shape\[0\]", lambda: solver.sample((8.0, 2), key=KEY)),
        (TypeError, "key", lambda: solver.sample((8, 2))),
        (TypeError, "key", lambda: solver.sample((8, 2), key=0)),
        (ValueError, "timesteps", lambda: solver.sample((8, 2), key=KEY, timesteps=[0.5, 0.8])),
        (ValueError, "use_ot_correction", lambda: solver.sample((8, 2), key=KEY, reference=ref)),
        (ValueError, "reference", lambda: ot.sample((8, 2), key=KEY)),
        (
            ValueError,
            r"reference must have shape \[R, 2\].*\(16, 3\)",
            lambda: ot.sample((8, 2), key=KEY, reference=jnp.ones((16, 3))),
        ),
        (
            ValueError,
            "reference",
            lambda: ot.sample((8, 2), key=KEY, reference=ref.at[0, 0].set(jnp.nan)),
        ),
        (
            ValueError,
            "memory_limit_ot_mb",
            lambda: FastSBOTSolver(exact_score(COSINE), COSINE, config=tiny).sample(
                (8, 2), key=KEY, reference=ref
            ),
        ),
        (
            ValueError,
            r"score_model returned shape \(8, 1\) for x of shape \(8, 2\)",
            lambda: FastSBOTSolver(lambda x, t: x[:, :1], COSINE).sample((8, 2), key=KEY),
        ),
        (TypeError, "score_model", lambda: FastSBOTSolver(np.ones(3), COSINE)),
        (TypeError, "schedule", lambda: FastSBOTSolver(exact_score(COSINE), "cosine")),
        (TypeError, "config", lambda: FastSBOTSolver(exact_score(COSINE), COSINE, config={})),
        (
            ValueError,
            "clamp",
            lambda: NoisePredictorToScoreWrapper(exact_score(COSINE), COSINE, clamp=0.0),
        ),
        (
            ValueError,
            "max_size_bytes",
            lambda: PersistentKernelCache().enable("/tmp/x", max_size_bytes=0),
        ),
        (
            ValueError,
            "min_compile_time_secs",
            lambda: PersistentKernelCache().enable("/tmp/x", min_compile_time_secs=-1),
        ),
    ]


@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_bad_input_raises_naming_the_field(case):
    error, pattern, call = _bad_calls()[case]
    with pytest.raises(error, match=pattern):
        call()


def test_an_unhashable_score_model_or_a_bad_predicts_noise_is_refused():
    class Unhashable:
        __hash__ = None

        def __call__(self, x, t):
            return x

    with pytest.raises(TypeError, match="score_model must be hashable"):
        FastSBOTSolver(Unhashable(), COSINE)

    def model(x, t):
        return x

    model.predicts_noise = "yes"
    with pytest.raises(TypeError, match="predicts_noise"):
        FastSBOTSolver(model, COSINE)
