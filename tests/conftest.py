"""Shared fixtures: PRNG keys and float64 toggling."""

import jax
import pytest


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def enable_x64():
    prev = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", prev)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled executables after each test module.

    The suite compiles thousands of programs in one process; without this the process
    keeps every executable alive to the end (a CI run crashed in XLA's compiler after
    ~1100 s with that much held).
    """
    yield
    jax.clear_caches()
