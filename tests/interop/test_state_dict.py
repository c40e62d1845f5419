"""State-dict files (safetensors without torch, torch pickles safely) and the key report."""

import collections
import fractions
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from jaxdiff.interop.keys import StateDictMismatchError, check_state_dict
from jaxdiff.interop.state_dict import load_state_dict, save_safetensors

ARRAYS = {
    "a.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
    "a.bias": np.ones(3, np.float32),
    "steps": np.array([1, 2], np.int64),
}


def _assert_same(got, want):
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
        assert got[k].dtype == want[k].dtype


def test_safetensors_roundtrip_is_atomic(tmp_path):
    path = tmp_path / "sub" / "w.safetensors"
    save_safetensors(ARRAYS, path)
    save_safetensors({"x": np.zeros(2, np.float32)}, path)  # overwrite in place
    _assert_same(load_state_dict(path), {"x": np.zeros(2, np.float32)})
    assert os.listdir(path.parent) == ["w.safetensors"]  # no temporary file left


def test_failed_save_leaves_old_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors(ARRAYS, path)
    with pytest.raises(TypeError, match="keys must be str"):
        save_safetensors({1: np.zeros(2)}, path)
    _assert_same(load_state_dict(path), ARRAYS)
    assert os.listdir(tmp_path) == ["w.safetensors"]


def test_safetensors_loads_without_torch(tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors(ARRAYS, path)
    script = textwrap.dedent(
        f"""
        import sys
        class _NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, _NoTorch())
        from jaxdiff.interop.state_dict import load_state_dict
        sd = load_state_dict({str(path)!r})
        assert sorted(sd) == ["a.bias", "a.weight", "steps"], sorted(sd)
        assert "torch" not in sys.modules
        try:
            import torch
        except ImportError:
            print("ok")
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=root, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_torch_file_weights_only(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({k: torch.from_numpy(v) for k, v in ARRAYS.items()}, path)
    _assert_same(load_state_dict(path), ARRAYS)


def test_torch_file_nested_and_wrapped(tmp_path):
    path = tmp_path / "ckpt.pth"
    nested = {"a": {"weight": torch.ones(2, 2, dtype=torch.bfloat16)}, "b": torch.zeros(1)}
    torch.save({"state_dict": nested, "epoch": 3}, path)
    sd = load_state_dict(path)
    assert set(sd) == {"a.weight", "b"} and sd["a.weight"].dtype == np.float32


def test_arbitrary_pickle_is_refused_unless_allowed(tmp_path):
    path = tmp_path / "w.bin"
    torch.save({"w": torch.ones(2), "meta": fractions.Fraction(1, 3)}, path)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_state_dict(path)
    with pytest.raises(TypeError, match="meta"):  # allowed, but not a tensor
        load_state_dict(path, allow_pickle=True)
    ok = tmp_path / "ok.bin"
    torch.save({"w": torch.ones(2), "c": collections.OrderedDict(x=torch.zeros(1))}, ok)
    assert set(load_state_dict(ok, allow_pickle=True)) == {"w", "c.x"}


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_state_dict(tmp_path / "missing.safetensors")
    other = tmp_path / "w.npz"
    other.write_bytes(b"")
    with pytest.raises(ValueError, match=".npz"):
        load_state_dict(other)


def test_key_report_lists_all_problems():
    expected = {"a": (2, 3), "b": (4,), "c": (1,)}
    provided = {"a": np.zeros((3, 2)), "b": np.zeros(4), "z": np.zeros(1)}
    with pytest.raises(StateDictMismatchError) as info:
        check_state_dict(expected, provided, what="ckpt.safetensors")
    err = info.value
    assert isinstance(err, ValueError)
    assert err.unknown == ["z"] and err.missing == ["c"]
    assert err.mismatched == {"a": ((2, 3), (3, 2))}
    assert "ckpt.safetensors" in str(err) and "expected (2, 3), got (3, 2)" in str(err)
    check_state_dict(expected, {"a": np.zeros((2, 3)), "b": np.zeros(4), "c": np.zeros(1)})


def test_key_report_truncates_long_lists():
    expected = {f"k{i}": (1,) for i in range(50)}
    with pytest.raises(StateDictMismatchError, match="and 30 more"):
        check_state_dict(expected, {})


class _WritesMarker:
    """Unpickling this runs ``open(marker, "w")``: the code-execution risk of pickles."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("flag", ["False", "no", "", 0, 1, None, [False]])
def test_allow_pickle_must_be_a_real_bool(tmp_path, flag):
    """A string flag such as "False" is truthy: it must not switch the safe load off."""
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.ones(2), "x": _WritesMarker(marker)}, path)
    with pytest.raises(TypeError, match="allow_pickle must be a bool"):
        load_state_dict(path, allow_pickle=flag)
    assert not marker.exists()
    with pytest.raises(ValueError, match="allow_pickle=True"):  # the safe default refuses
        load_state_dict(path)
    assert not marker.exists()


def _corrupt_copies(tmp_path, good: bytes, suffix: str) -> list:
    variants = {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "header_only": good[:8],
        "random": np.random.default_rng(0).bytes(256),
    }
    paths = []
    for name, data in variants.items():
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("allow_pickle", [False, True])
def test_unreadable_files_raise_value_error_naming_the_file(tmp_path, suffix, allow_pickle):
    good = tmp_path / f"good{suffix}"
    if suffix == ".pt":
        torch.save({k: torch.from_numpy(v) for k, v in ARRAYS.items()}, good)
    else:
        save_safetensors(ARRAYS, good)
    for path in _corrupt_copies(tmp_path, good.read_bytes(), suffix):
        with pytest.raises(ValueError, match="not a readable") as info:
            load_state_dict(path, allow_pickle=allow_pickle)
        assert str(path) in str(info.value)


def test_path_must_be_a_path():
    for bad in (None, 3, b"w.safetensors", ["w.pt"]):
        with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
            load_state_dict(bad)


def test_save_safetensors_rejects_bad_arguments_before_writing(tmp_path):
    path = tmp_path / "w.safetensors"
    cases = [
        ((ARRAYS, None), "path must be"),
        (([("a", np.zeros(2))], path), "state_dict must be a mapping"),
        (({"a": np.array(["text"])}, path), r"state_dict\['a'\] has dtype"),
        (({"a": np.array([None])}, path), r"state_dict\['a'\] has dtype"),
    ]
    for args, msg in cases:
        with pytest.raises(TypeError, match=msg):
            save_safetensors(*args)
    with pytest.raises(TypeError, match="metadata must be"):
        save_safetensors(ARRAYS, path, metadata={"epoch": 3})
    assert os.listdir(tmp_path) == []
