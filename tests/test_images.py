"""The one image loader and the one preprocessing function."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from core.base import config
from core.data.images import ImageError, deprocess, encode_png, load_image, preprocess, resize_to_input


def _encode(arr_or_im, fmt: str, **kw) -> bytes:
    im = arr_or_im if isinstance(arr_or_im, Image.Image) else Image.fromarray(arr_or_im)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _huge_png(w: int = 20_000, h: int = 20_000) -> bytes:
    """A tiny PNG whose (valid, CRC-checked) IHDR claims w x h pixels."""
    data = bytearray(_encode(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = struct.pack(">II", w, h) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


# format, save kwargs, exact round trip?
FORMATS = [("PNG", {}, True), ("PPM", {}, True), ("WEBP", {"lossless": True}, True), ("BMP", {}, True),
           ("JPEG", {"quality": 95}, False), ("WEBP", {"quality": 90}, False)]


@pytest.mark.parametrize("fmt,kw,exact", FORMATS, ids=[f"{f}-{'exact' if e else 'lossy'}" for f, _, e in FORMATS])
@pytest.mark.parametrize("as_path", [False, True], ids=["bytes", "path"])
def test_load_image_formats(fmt, kw, exact, as_path, tmp_path, make_image):
    arr = make_image(20, 28, seed=1, smooth=True)
    data = _encode(arr, fmt, **kw)
    if as_path:
        p = tmp_path / f"img.{fmt.lower()}"
        p.write_bytes(data)
        out = load_image(p)
    else:
        out = load_image(data)
    assert out.shape == (20, 28, 3) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    diff = np.abs(out.astype(int) - arr.astype(int))
    if exact:
        assert diff.max() == 0
    else:
        assert diff.mean() < 8


def test_rgba_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)     # opaque red stays red
    rgba[0, 1] = (0, 0, 0, 0)         # fully transparent -> white
    rgba[0, 2] = (0, 0, 0, 128)       # half-transparent black -> mid grey
    rgba[1:] = (10, 200, 30, 0)       # transparent colour is not shown
    out = load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert out.shape == (4, 4, 3)
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert np.all(np.abs(out[0, 2].astype(int) - 127) <= 1)
    assert np.all(out[1:] == 255)


def test_la_greyscale_with_alpha_is_composited_on_white():
    la = Image.new("LA", (3, 3), (0, 0))
    out = load_image(_encode(la, "PNG"))
    assert np.all(out == 255)


def test_greyscale_becomes_rgb():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    out = load_image(_encode(Image.fromarray(grey, "L"), "PNG"))
    assert out.shape == (8, 8, 3)
    for c in range(3):
        assert np.array_equal(out[..., c], grey)


def test_16_bit_greyscale_becomes_rgb():
    grey16 = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000)
    out = load_image(_encode(Image.fromarray(grey16), "PNG"))
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


def test_palette_becomes_rgb(make_image):
    arr = make_image(16, 16, seed=3, smooth=True)
    pal = Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    out = load_image(_encode(pal, "PNG"))
    assert out.shape == (16, 16, 3)
    assert np.array_equal(out, np.asarray(pal.convert("RGB")))
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= 8


def test_palette_transparency_is_composited_on_white():
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0] + [200, 10, 10] * 255)
    pal.putpixel((0, 0), 1)
    pal.info["transparency"] = 0
    out = load_image(_encode(pal, "PNG", transparency=0))
    assert tuple(out[0, 0]) == (200, 10, 10)
    assert tuple(out[1, 1]) == (255, 255, 255)


def _truncated_png(make_image) -> bytes:
    data = _encode(make_image(64, 64, seed=2), "PNG")
    return data[: len(data) // 2]


BAD = {
    "empty": lambda mk: b"",
    "truncated_png": _truncated_png,
    "text": lambda mk: b"this is not an image, just some text\n" * 5,
    "unsupported_format": lambda mk: _encode(Image.new("RGB", (16, 16), (1, 2, 3)), "ICO"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_files_raise_image_error_naming_the_file(kind, tmp_path, make_image):
    data = BAD[kind](make_image)
    p = tmp_path / f"bad_{kind}.png"
    p.write_bytes(data)
    with pytest.raises(ImageError) as ei:
        load_image(p)
    assert str(p) in str(ei.value)
    assert isinstance(ei.value, ValueError)
    if data:  # bytes with a display name
        with pytest.raises(ImageError, match=f"upload_{kind}.png"):
            load_image(data, name=f"upload_{kind}.png")
    else:
        with pytest.raises(ImageError, match="empty"):
            load_image(data, name="x.png")


def test_missing_file_raises_image_error(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(ImageError, match="no such file") as ei:
        load_image(p)
    assert str(p) in str(ei.value)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [7_000, 20_000])  # 49 MP: our header check; 400 MP: PIL's bomb guard too
def test_huge_image_is_refused_from_its_header_before_decoding(side, tmp_path, monkeypatch):
    data = _huge_png(side, side)
    assert len(data) < 200
    p = tmp_path / "bomb.png"
    p.write_bytes(data)
    decoded = []  # never decoded: PIL's pixel loading is not reached (not a timing, which depends on the machine)
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im.size) or real_load(im))
    with pytest.raises(ImageError) as ei:
        load_image(p)
    assert decoded == []
    msg = str(ei.value)
    assert msg.startswith(f"{p}: ") and f"{config.MAX_IMAGE_PIXELS:,}" in msg and "crop or downscale" in msg
    if side == 7_000:
        assert "7000x7000" in msg
    with pytest.raises(ImageError, match="^upload.png: image"):
        load_image(data, name="upload.png")


def test_max_pixels_is_honoured(make_image):
    data = _encode(make_image(10, 10), "PNG")
    assert load_image(data, max_pixels=100).shape == (10, 10, 3)
    with pytest.raises(ImageError, match="10x10 = 100 pixels, above the limit of 99"):
        load_image(data, max_pixels=99)


def test_encode_png_is_deterministic_and_lossless(make_image):
    arr = make_image(9, 13, seed=4)
    assert encode_png(arr) == encode_png(arr.copy())
    assert np.array_equal(load_image(encode_png(arr)), arr)


def test_preprocess_batch_shape_and_normalisation(make_images):
    batch = make_images(5, size=32, seed=0)
    x = preprocess(batch)
    assert isinstance(x, torch.Tensor)
    assert x.shape == (5, 3, 48, 48) and x.dtype == torch.float32 and x.is_contiguous()
    # a mid-grey image equal to the mean maps to ~0
    from core.data.images import MEAN, STD
    mean_img = np.broadcast_to(np.round(MEAN * 255).astype(np.uint8), (48, 48, 3)).copy()
    assert preprocess(mean_img).abs().max() < 0.01
    white = preprocess(np.full((48, 48, 3), 255, np.uint8))
    assert torch.allclose(white[0, :, 0, 0], torch.from_numpy((1 - MEAN) / STD), atol=1e-5)


def test_preprocess_single_image_and_list_of_sizes(make_image):
    assert preprocess(make_image(48, 48)).shape == (1, 3, 48, 48)
    images = [make_image(20, 30, seed=1), make_image(48, 48, seed=2), make_image(100, 64, seed=3), make_image(5, 5)]
    x = preprocess(images)
    assert x.shape == (4, 3, 48, 48) and x.dtype == torch.float32
    assert preprocess(images, size=32).shape == (4, 3, 32, 32)


@pytest.mark.parametrize("hw", [(48, 48), (32, 32), (20, 70), (96, 96)])
def test_deprocess_inverts_preprocess_within_one_grey_level(hw, make_image):
    img = make_image(*hw, seed=7)
    back = deprocess(preprocess(img))
    assert back.shape == (1, 48, 48, 3) and back.dtype == np.uint8
    assert np.abs(back[0].astype(int) - resize_to_input(img).astype(int)).max() <= 1


def test_resize_to_input_leaves_48_alone_and_resizes_others(make_image):
    img = make_image(48, 48)
    assert resize_to_input(img) is img
    assert resize_to_input(make_image(10, 90)).shape == (48, 48, 3)


def test_preprocess_empty_batch():
    for empty in (np.zeros((0, 32, 32, 3), np.uint8), []):
        x = preprocess(empty)
        assert x.shape == (0, 3, 48, 48) and x.dtype == torch.float32
    assert deprocess(preprocess([])).shape == (0, 48, 48, 3)


def test_normalise_takes_a_read_only_batch_and_matches_preprocess():
    import warnings
    import torch
    from core.data.images import normalise, preprocess
    batch = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    batch.flags.writeable = False  # as a cached split hands it out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = normalise(batch)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x.contiguous(), preprocess(batch))


def test_normalise_is_bitwise_the_per_channel_formula_on_the_nchw_view():
    """Scaling in the pixels' (N, S, S, 3) order is an optimisation only: every value as before, channels-last."""
    from core.data.images import MEAN, STD, normalise
    batch = np.random.default_rng(5).integers(0, 256, (7, 48, 48, 3), dtype=np.uint8)
    before = torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)
    before = before.sub_(torch.from_numpy(MEAN).view(1, 3, 1, 1)).div_(torch.from_numpy(STD).view(1, 3, 1, 1))
    x = normalise(batch)
    assert torch.equal(x, before) and x.shape == (7, 3, 48, 48)
    assert x.is_contiguous(memory_format=torch.channels_last)
