"""``SamplingResult``'s repr is one short line of metadata, never array entries."""

import re

import jax
import jax.numpy as jnp
import numpy as np

import jaxdiff
from jaxdiff import SamplingResult

MAX_REPR = 300  # characters of one result's repr


def _zero_model(x, t, context):
    return jnp.zeros_like(x)


def test_compare_sampling_methods_prints_short():
    manager = jaxdiff.create_sampler("linear", "ddim", num_inference_steps=3)
    latents = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
    results = manager.compare_sampling_methods(
        _zero_model, latents, methods=["ddim", "euler"], key=jax.random.key(0)
    )
    assert list(results) == ["ddim", "euler"]
    for name, result in results.items():
        text = repr(result)
        assert len(text) < MAX_REPR, text
        assert "\n" not in text
        assert f"method={name!r}" in text
        assert "samples=float32[4, 16, 16, 3]" in text
        assert f"nfe={result.num_function_evals}" in text
        assert "all_finite=True" in text
        assert "compile_time=" in text and "processing_time=" in text
    assert len(str(results)) < 2 * MAX_REPR + 40


def test_repr_shows_no_array_entries():
    samples = jnp.full((3, 5), 123.456, jnp.bfloat16)
    trajectory = np.full((2, 3, 5), 987.654, np.float32)
    result = SamplingResult(
        samples=samples,
        processing_time=0.25,
        num_function_evals=7,
        compile_time=1.5,
        method="ddpm",
        trajectory=trajectory,
        all_finite=False,
        first_nonfinite_step=2,
        errors=["non-finite model output at model call 2"],
    )
    text = repr(result)
    assert text == (
        "SamplingResult(method='ddpm', samples=bfloat16[3, 5], nfe=7, processing_time=0.25s, "
        "compile_time=1.5s, all_finite=False, trajectory=float32[2, 3, 5], errors=1)"
    )
    assert not re.search(r"123|987|Array\(", text)
