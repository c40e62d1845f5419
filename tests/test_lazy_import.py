"""``import jaxdiff`` is lazy (no JAX until a name is used) and its names all resolve."""

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import jaxdiff

ROOT = Path(__file__).resolve().parents[1]


def _run_fresh(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter (this one has JAX imported already)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_does_not_import_jax_until_a_name_is_used():
    proc = _run_fresh(
        """
        import sys
        import jaxdiff
        assert "jax" not in sys.modules, "import jaxdiff imported jax"
        config = jaxdiff.SamplingConfig()
        assert "jax" in sys.modules
        from jaxdiff import create_sampler
        assert callable(create_sampler)
        print(type(config).__module__)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "jaxdiff.samplers.config"


@pytest.mark.parametrize("name", jaxdiff.__all__)
def test_every_public_name_resolves(name):
    value = getattr(jaxdiff, name)
    assert value.__name__ == name
    assert name in dir(jaxdiff)


def test_subpackages_resolve_as_attributes():
    assert jaxdiff.samplers.sample is not None
    assert "ot" in dir(jaxdiff)


@pytest.mark.parametrize("name", ["no_such_name", "_private", "a.b"])
def test_unknown_attribute_raises_naming_it(name):
    with pytest.raises(AttributeError, match=re.escape(f"has no attribute {name!r}")):
        getattr(jaxdiff, name)


def test_version_matches_pyproject():
    with open(ROOT / "pyproject.toml", "rb") as fh:
        version = tomllib.load(fh)["project"]["version"]
    assert jaxdiff.__version__ == version
