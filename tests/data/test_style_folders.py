"""Style image folders: write/read round trips, file order, modes, resizing, errors."""

import os

import numpy as np
import pytest
from PIL import Image

from jaxdiff.data.style_folders import load_style_folders, write_style_folders

HALF_STEP = 1.0 / 255.0  # 8-bit PNG: values are multiples of 2/255 away from -1


def random_images(n, h, w, c, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, h, w, c)).astype(np.float32)


def _png(path, value, size=(4, 4), mode="L"):
    shape = size if mode == "L" else (*size, len(mode))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(shape, value, np.uint8), mode).save(path)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_write_then_load_round_trip(tmp_path, channels):
    images = random_images(7, 6, 5, channels)  # non-square: catches a height/width swap
    labels = np.array([2, 0, 1, 0, 2, 1, 0])
    root = write_style_folders(tmp_path / "raw_data", images, labels)
    assert sorted(os.listdir(tmp_path)) == ["raw_data"]  # no temporary folder left
    loaded, styles = load_style_folders(root)
    order = np.argsort(labels, kind="stable")  # grouped by style, input order within
    assert loaded.dtype == np.float32 and styles.dtype == np.int32
    np.testing.assert_array_equal(styles, labels[order])
    assert loaded.shape == images.shape
    assert np.abs(loaded - images[order]).max() <= HALF_STEP + 1e-6
    # exactly the 8-bit quantisation of the input
    quantised = np.rint((images[order] + 1.0) * 127.5) / 127.5 - 1.0
    np.testing.assert_allclose(loaded, quantised, atol=1e-6)


def test_files_read_in_name_order_all_suffixes(tmp_path):
    folder = tmp_path / "style_0"
    _png(folder / "b.png", 100)
    Image.fromarray(np.full((4, 4), 50, np.uint8)).save(folder / "a.JPG", quality=100)
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(folder / "c.jpeg", quality=100)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"macOS resource fork")
    _png(tmp_path / "style_1" / "x.png", 255)
    (tmp_path / "unrelated").mkdir()
    images, styles = load_style_folders(tmp_path)
    np.testing.assert_array_equal(styles, [0, 0, 0, 1])
    pixels = (images[..., 0].mean(axis=(1, 2)) + 1.0) * 127.5
    np.testing.assert_allclose(pixels, [50, 100, 200, 255], atol=1.0)  # JPEG of a flat image


def test_sixteen_bit_png_scaled_to_unit_range(tmp_path):
    (tmp_path / "style_0").mkdir()
    Image.fromarray(np.full((2, 3), 65535, np.uint16)).save(tmp_path / "style_0" / "w.png")
    Image.fromarray(np.zeros((2, 3), np.uint16)).save(tmp_path / "style_0" / "z.png")
    images, _ = load_style_folders(tmp_path)
    np.testing.assert_allclose(images[..., 0].reshape(2, -1), [[1.0] * 6, [-1.0] * 6])


def test_modes_give_channel_counts(tmp_path):
    folder = tmp_path / "style_0"
    folder.mkdir()
    palette = Image.fromarray(np.full((2, 2), 7, np.uint8), "L").convert("P")
    palette.save(folder / "p.png")
    palette.save(folder / "t.png", transparency=0)
    Image.fromarray(np.full((2, 2, 2), 9, np.uint8), "LA").save(folder / "la.png")
    Image.new("1", (2, 2), 1).save(folder / "b.png")
    shapes = {}
    for name in ("p", "t", "la", "b"):
        (tmp_path / "one" / "style_0").mkdir(parents=True, exist_ok=True)
        for f in (tmp_path / "one" / "style_0").iterdir():
            f.unlink()
        (folder / f"{name}.png").rename(tmp_path / "one" / "style_0" / f"{name}.png")
        images, _ = load_style_folders(tmp_path / "one")
        shapes[name] = (images.shape[-1], round(float((images[0, 0, 0, 0] + 1) * 127.5)))
    assert shapes == {"p": (3, 7), "t": (4, 7), "la": (2, 9), "b": (1, 255)}


def test_resize_is_lanczos_and_keeps_flat_images(tmp_path):
    _png(tmp_path / "style_0" / "a.png", 40, size=(6, 9), mode="RGB")
    _png(tmp_path / "style_1" / "b.png", 220, size=(4, 4), mode="RGB")
    images, styles = load_style_folders(tmp_path, image_size=(4, 5), channels=3, resize=True)
    assert images.shape == (2, 4, 5, 3)
    np.testing.assert_allclose(images[0], 40 / 127.5 - 1, atol=1e-5)  # weights sum to 1
    np.testing.assert_allclose(images[1], 220 / 127.5 - 1, atol=1e-5)
    # a ramp: Lanczos downsampling of a linear ramp stays close to the ramp
    ramp = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))
    Image.fromarray(ramp).save(tmp_path / "style_0" / "a.png")
    _png(tmp_path / "style_1" / "b.png", 0, size=(16, 16))
    small, _ = load_style_folders(tmp_path, image_size=8, resize=True)
    expected = np.linspace(-1, 1, 16).reshape(8, 2).mean(axis=1)
    np.testing.assert_allclose(small[0, 4, 1:-1, 0], expected[1:-1], atol=0.02)


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="root="):
        load_style_folders(tmp_path / "absent")
    (tmp_path / "other").mkdir()
    with pytest.raises(ValueError, match="no style_<k> folders"):
        load_style_folders(tmp_path)
    _png(tmp_path / "style_0" / "a.png", 0)
    _png(tmp_path / "style_2" / "a.png", 0)
    with pytest.raises(ValueError, match="no style_1;"):
        load_style_folders(tmp_path)
    (tmp_path / "style_2" / "a.png").unlink()
    (tmp_path / "style_2").rmdir()
    (tmp_path / "style_01").mkdir()
    with pytest.raises(ValueError, match="style_01: .*leading zeros"):
        load_style_folders(tmp_path)
    (tmp_path / "style_01").rmdir()
    (tmp_path / "style_1").mkdir()
    (tmp_path / "style_1" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="style_1 holds no"):
        load_style_folders(tmp_path)


def test_corrupt_image_named(tmp_path):
    _png(tmp_path / "style_0" / "good.png", 0)
    (tmp_path / "style_1").mkdir()
    (tmp_path / "style_1" / "broken.png").write_bytes(b"\x89PNG garbage, not an image")
    with pytest.raises(ValueError, match=r"broken\.png: not a readable image"):
        load_style_folders(tmp_path)
    # a truncated real PNG: the header parses, the pixel data does not
    data = (tmp_path / "style_0" / "good.png").read_bytes()
    (tmp_path / "style_1" / "broken.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"broken\.png: not a readable image"):
        load_style_folders(tmp_path)


def test_shape_errors_name_file_shape_and_expected(tmp_path):
    _png(tmp_path / "style_0" / "a.png", 0, size=(4, 4))
    _png(tmp_path / "style_1" / "b.png", 0, size=(4, 6))
    with pytest.raises(ValueError, match=r"b\.png: .*\(4, 6, 1\); expected \(4, 4, 1\).*first"):
        load_style_folders(tmp_path)  # images disagree
    with pytest.raises(ValueError, match=r"a\.png: .*\(4, 4, 1\); expected \(4, 6, 1\).*argum"):
        load_style_folders(tmp_path, image_size=(4, 6))
    (tmp_path / "style_1" / "b.png").unlink()
    _png(tmp_path / "style_1" / "b.png", 0, size=(4, 4), mode="RGB")
    with pytest.raises(ValueError, match=r"b\.png: .*\(4, 4, 3\); expected \(4, 4, 1\)"):
        load_style_folders(tmp_path)
    with pytest.raises(ValueError, match=r"a\.png: .*\(4, 4, 1\); expected \(4, 4, 3\)"):
        load_style_folders(tmp_path, channels=3)
    with pytest.raises(ValueError, match=r"a\.png: .*expected \(4, 4, 3\)"):
        load_style_folders(tmp_path, image_size=4, channels=3, resize=True)  # no channel change


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="resize=True needs image_size"):
        load_style_folders(tmp_path, resize=True)
    with pytest.raises(TypeError, match="resize must be a bool"):
        load_style_folders(tmp_path, resize="yes")
    with pytest.raises(TypeError, match="image_size"):
        load_style_folders(tmp_path, image_size=(4, 4, 3))
    with pytest.raises(ValueError, match="image_size"):
        load_style_folders(tmp_path, image_size=0)
    with pytest.raises(ValueError, match="channels"):
        load_style_folders(tmp_path, channels=5)


def test_write_errors(tmp_path):
    images = random_images(3, 4, 4, 1)
    with pytest.raises(ValueError, match=r"images must be finite and lie in \[-1, 1\]"):
        write_style_folders(tmp_path / "r", images * 255, [0, 1, 0])
    with pytest.raises(ValueError, match="labels must be an int array of shape \\(3,\\)"):
        write_style_folders(tmp_path / "r", images, [0, 1])
    with pytest.raises(ValueError, match="without a gap"):
        write_style_folders(tmp_path / "r", images, [0, 2, 0])
    with pytest.raises(ValueError, match="1 to 4 channels"):
        write_style_folders(tmp_path / "r", random_images(3, 4, 4, 5), [0, 1, 0])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        write_style_folders(tmp_path / "full", images, [0, 1, 0])
    assert sorted(os.listdir(tmp_path)) == ["full"]  # nothing written by the failures
    (tmp_path / "empty").mkdir()
    write_style_folders(tmp_path / "empty", images, [0, 1, 0])  # an empty folder is fine
    assert load_style_folders(tmp_path / "empty")[0].shape == (3, 4, 4, 1)
