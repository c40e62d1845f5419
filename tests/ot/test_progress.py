"""``sinkhorn(..., progress=True)``: progress lines from the compiled loop, same result."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.ot import sinkhorn

LINE = re.compile(r"^sinkhorn: iteration (\d+)/(\d+), error (\S+)$", re.M)
SETTINGS = dict(epsilon=0.2, inner_iterations=5, max_iterations=400, threshold=1e-4)


def _clouds():
    x = jax.random.normal(jax.random.key(0), (30, 2))
    y = jax.random.normal(jax.random.key(1), (20, 2)) + 1.0
    return x, y


def _progress_lines(capfd) -> list[tuple[int, int, float]]:
    out, err = capfd.readouterr()
    assert out == ""  # progress goes to stderr, stdout stays clean
    return [(int(k), int(top), float(e)) for k, top, e in LINE.findall(err)]


@pytest.mark.parametrize("geometry", ["dense", "online"])
def test_progress_prints_iterations_and_keeps_the_result(capfd, geometry):
    x, y = _clouds()
    run = jax.jit(
        lambda x, y, progress: sinkhorn(x, y, geometry=geometry, progress=progress, **SETTINGS),
        static_argnums=2,
    )
    quiet = run(x, y, False)
    jax.block_until_ready(quiet)
    assert _progress_lines(capfd) == []
    loud = run(x, y, True)
    jax.effects_barrier()  # wait for the host callbacks
    lines = _progress_lines(capfd)

    n_iters = int(loud.n_iters)
    assert 0 < n_iters < SETTINGS["max_iterations"]  # converged, so the test sees a stop
    assert [k for k, _, _ in lines] == list(range(5, n_iters + 1, 5))
    assert {top for _, top, _ in lines} == {SETTINGS["max_iterations"]}
    recorded = np.asarray(loud.errors)[: len(lines)]
    np.testing.assert_allclose([e for _, _, e in lines], recorded, rtol=1e-3)
    assert lines[-1][2] < SETTINGS["threshold"] < lines[0][2]
    for got, want in zip(jax.tree.leaves(loud), jax.tree.leaves(quiet), strict=True):
        np.testing.assert_array_equal(got, want)


def test_progress_eager_prints(capfd):
    x, y = _clouds()
    result = sinkhorn(x, y, progress=True, **SETTINGS)
    jax.effects_barrier()
    lines = _progress_lines(capfd)
    assert len(lines) == int(result.n_iters) // 5 > 0


@pytest.mark.parametrize("value", ["True", 1, None, jnp.array(True)])
def test_progress_must_be_a_bool(value):
    x, y = _clouds()
    with pytest.raises(TypeError, match="progress must be a bool"):
        sinkhorn(x, y, epsilon=0.05, progress=value)
