import pytest


@pytest.fixture(scope="session")
def xla_cache(tmp_path_factory):
    """A persistent XLA compilation cache shared by the subprocess workers."""
    return tmp_path_factory.mktemp("xla_cache")
