"""Uploads: single files, batches, folders and zip archives; one clear error per bad file, nothing written."""
from __future__ import annotations

import hashlib
import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core.base import config
from core.data import uploads
from core.data.uploads import MAX_NAME_CHARS, MAX_SIDE, Upload, read_bytes, read_paths, safe_name


# ----- builders -----

def _encode(arr_or_im, fmt: str = "PNG", **kw) -> bytes:
    im = arr_or_im if isinstance(arr_or_im, Image.Image) else Image.fromarray(arr_or_im)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png(seed: int = 0, h: int = 12, w: int = 16) -> bytes:
    return _encode(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _huge_png(w: int = 20_000, h: int = 20_000) -> bytes:
    """A tiny PNG whose (valid, CRC-checked) IHDR claims w x h pixels."""
    data = bytearray(_encode(Image.new("RGB", (1, 1))))
    ihdr = struct.pack(">II", w, h) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def _zip(members: list[tuple[str, bytes]], compression: int = zipfile.ZIP_STORED) -> bytes:
    """An in-memory zip; a name ending in '/' is a folder entry."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name) if name.endswith("/") else name, data)
    return buf.getvalue()


def _files_under(*roots: Path) -> set[Path]:
    return {p for root in roots if root.exists() for p in root.rglob("*")}


@pytest.fixture
def spy_open(monkeypatch):
    """Names of the zip members that were opened (decompressed); extract/extractall fail the test."""
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def _open(self, name, mode="r", *a, **kw):
        if mode == "r":  # the builders write with mode="w"
            opened.append(name.orig_filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, mode, *a, **kw)

    def _forbidden(*a, **kw):
        raise AssertionError("uploads must never extract to disk")

    monkeypatch.setattr(zipfile.ZipFile, "open", _open)
    monkeypatch.setattr(zipfile.ZipFile, "extract", _forbidden)
    monkeypatch.setattr(zipfile.ZipFile, "extractall", _forbidden)
    return opened


# ----- single images -----

@pytest.mark.parametrize("fmt,kw,exact", [("PNG", {}, True), ("JPEG", {"quality": 95}, False)])
def test_good_image_decodes_with_sha_of_original_bytes(fmt, kw, exact, make_image):
    arr = make_image(20, 28, seed=1, smooth=True)
    data = _encode(arr, fmt, **kw)
    [up] = read_bytes(f"sign.{fmt.lower()}", data)
    assert up.ok and up.error is None and up.name == f"sign.{fmt.lower()}"
    assert up.image.shape == (20, 28, 3) and up.image.dtype == np.uint8
    assert up.sha256 == hashlib.sha256(data).hexdigest()
    diff = np.abs(up.image.astype(int) - arr.astype(int))
    assert diff.max() == 0 if exact else diff.mean() < 8


MODES = {
    "cmyk_jpeg": (lambda: _encode(Image.new("CMYK", (10, 6), (0, 255, 255, 0)), "JPEG", quality=95), (255, 0, 0)),
    "png_16bit": (lambda: _encode(Image.fromarray(np.full((6, 10), 65535, np.uint16))), (255, 255, 255)),
    "rgba_transparent": (lambda: _encode(Image.new("RGBA", (10, 6), (0, 0, 0, 0))), (255, 255, 255)),
    "greyscale": (lambda: _encode(Image.new("L", (10, 6), 100)), (100, 100, 100)),
    "palette": (lambda: _encode(Image.new("RGB", (10, 6), (0, 0, 204)).convert("P")), (0, 0, 204)),
}


@pytest.mark.parametrize("kind", list(MODES))
def test_image_modes_become_rgb_uint8(kind):
    build, rgb = MODES[kind]
    [up] = read_bytes(f"{kind}.img", build())
    assert up.ok
    assert up.image.shape == (6, 10, 3) and up.image.dtype == np.uint8
    assert np.abs(up.image[3, 5].astype(int) - np.array(rgb)).max() <= 3


BAD = {
    "empty.png": (lambda: b"", "empty"),
    "notes.png": (lambda: b"this is not an image, just some text\n" * 5, "not an image"),
    "cut.png": (lambda: _png(3, 64, 64)[:300], "corrupt or truncated"),
    "huge.png": (_huge_png, "crop or downscale"),
}


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bad_bytes_give_one_error_each_and_the_batch_goes_on():
    batch = [("good1.png", _png(1))] + [(n, build()) for n, (build, _) in BAD.items()] + [("good2.png", _png(2))]
    results = [read_bytes(name, data) for name, data in batch]
    assert [len(r) for r in results] == [1] * len(batch)
    ups = [r[0] for r in results]
    assert ups[0].ok and ups[-1].ok and ups[-1].sha256 == hashlib.sha256(_png(2)).hexdigest()
    for up, (name, (_, fragment)) in zip(ups[1:-1], BAD.items()):
        assert not up.ok and up.image is None and up.name == name
        assert up.error.startswith(f"{name}: ") and fragment in up.error


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bad_files_in_a_folder_give_one_error_each_and_good_ones_decode(tmp_path):
    folder = tmp_path / "batch"
    folder.mkdir()
    for name, (build, _) in BAD.items():
        (folder / name).write_bytes(build())
    (folder / "a_good.png").write_bytes(_png(1))
    (folder / "z_good.png").write_bytes(_png(2))
    ups = read_paths([folder])
    assert [u.name for u in ups] == [f"batch/{n}" for n in sorted([*BAD, "a_good.png", "z_good.png"])]
    by_name = {u.name: u for u in ups}
    assert by_name["batch/a_good.png"].ok and by_name["batch/z_good.png"].ok
    for name, (_, fragment) in BAD.items():
        up = by_name[f"batch/{name}"]
        assert not up.ok and up.error.startswith(f"batch/{name}: ") and fragment in up.error


@pytest.mark.parametrize("hw,expected", [((600, 300), (256, 128)), ((300, 1000), (77, 256)),
                                         ((256, 100), (256, 100)), ((10, 10), (10, 10))])
def test_big_images_are_downscaled_keeping_aspect(hw, expected, make_image):
    arr = make_image(*hw, seed=5, smooth=True)
    [up] = read_bytes("big.png", _encode(arr))
    assert up.image.shape == (*expected, 3) and max(up.image.shape[:2]) <= MAX_SIDE
    want = arr if hw == expected else cv2.resize(arr, expected[::-1], interpolation=cv2.INTER_AREA)
    assert np.array_equal(up.image, want)


def test_upload_over_the_size_limit_is_refused_unread(monkeypatch):
    monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", 2**20)
    for name, data in [("big.png", b"\x89PNG" + bytes(3 * 2**19)), ("big.zip", b"PK\x03\x04" + bytes(3 * 2**19))]:
        [up] = read_bytes(name, data)
        assert not up.ok and up.sha256 == ""
        assert up.error == (f"{name}: the file is 1.5 MiB, above the upload limit of 1.0 MiB; "
                            "downscale the image or split the archive")
    assert read_bytes("small.png", _png(0))[0].ok


def test_read_bytes_refuses_a_non_bytes_payload():
    with pytest.raises(ValueError, match="getvalue"):
        read_bytes("x.png", "not bytes")  # type: ignore[arg-type]


def test_upload_is_frozen_and_ok_follows_error():
    up = Upload("x.png", None, "", "x.png: bad")
    assert not up.ok
    with pytest.raises(AttributeError):
        up.name = "y.png"  # type: ignore[misc]


# ----- names -----

@pytest.mark.parametrize("raw,expected", [
    ("../../etc/passwd", "passwd"),
    ("a/b\\c.png", "c.png"),
    ("C:\\Users\\me\\sign.png", "sign.png"),
    ("x\x00y.png", "xy.png"),
    ("  my \t sign\n.png ", "my sign .png"),
    ("abc\u202egnp.exe", "abcgnp.exe"),
    ("Straße-标志.png", "Straße-标志.png"),
    ("signs/", "signs"),
    ("", "upload"),
    ("..", "upload"),
    ("../..\\.", "upload"),
    (".\x00.", "upload"),
    ("\x01\x02", "upload"),
])
def test_safe_name(raw, expected):
    assert safe_name(raw) == expected


def test_safe_name_cuts_long_names_keeping_the_extension():
    out = safe_name("a" * 500 + ".png")
    assert out.endswith(".png") and len(out) == MAX_NAME_CHARS
    assert len(safe_name("b" * 500)) == MAX_NAME_CHARS


@pytest.mark.parametrize("raw", ["../x/..", "..\\..\\", "a/../..", "/", "\\\\srv\\share\\..", ".\x00./x\x00/..",
                                 "x" * 300 + "/" + "." * 300])
def test_safe_name_never_contains_separators_nul_or_dotdot(raw):
    out = safe_name(raw)
    assert out and out not in (".", "..") and len(out) <= MAX_NAME_CHARS
    assert not any(ch in out for ch in "/\\\x00")


# ----- zip archives -----

def test_zip_expands_in_archive_order_skipping_folders_and_system_entries():
    a, b = _png(1), _encode(np.full((8, 8, 3), 90, np.uint8), "JPEG")
    data = _zip([("signs/", b""), ("signs/b.jpg", b), ("signs/a.png", a), ("__MACOSX/signs/._a.png", b"junk"),
                 (".DS_Store", b"junk"), ("signs/Thumbs.db", b"junk")], zipfile.ZIP_DEFLATED)
    ups = read_bytes("../pack.zip", data)
    assert [u.name for u in ups] == ["pack.zip/signs/b.jpg", "pack.zip/signs/a.png"]
    assert all(u.ok for u in ups)
    assert [u.sha256 for u in ups] == [hashlib.sha256(b).hexdigest(), hashlib.sha256(a).hexdigest()]


def test_zip_of_only_folders_and_junk_gives_nothing():
    assert read_bytes("empty.zip", _zip([("d/", b""), ("__MACOSX/._x", b"j")])) == []


def test_unsafe_member_paths_are_refused_unread_and_nothing_is_written(tmp_path, data_root, spy_open, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _zip([("../evil.png", _png(1)), ("/abs.png", _png(2)), ("C:\\win.png", _png(3)),
                 ("\\\\srv\\unc.png", _png(4)), ("ok/../../up.png", _png(5)), ("ok.png", _png(6)),
                 ("xNy.png", _png(7))])
    data = data.replace(b"xNy.png", b"x\x00y.png")  # zipfile cannot write a NUL name; patch both headers
    before = _files_under(tmp_path, data_root)
    ups = read_bytes("upload.zip", data)
    assert _files_under(tmp_path, data_root) == before
    assert not any(tmp_path.rglob("evil.png")) and not (tmp_path.parent / "evil.png").exists()  # cwd/../evil.png
    assert [u.name for u in ups] == [f"upload.zip/{n}" for n in
                                     ["evil.png", "abs.png", "C:/win.png", "srv/unc.png", "ok/up.png", "ok.png",
                                      "xy.png"]]
    assert [u.ok for u in ups] == [False] * 5 + [True, False]
    bad = [u for u in ups if not u.ok]
    assert all("unsafe path in archive" in u.error and "refused" in u.error and u.sha256 == "" for u in bad)
    assert all(u.error.startswith(f"{u.name}: ") for u in bad)
    assert "'../evil.png'" in bad[0].error and "'x\\x00y.png'" in bad[-1].error
    assert spy_open == ["ok.png"]


@pytest.mark.parametrize("n,ok", [(3, True), (4, False)])
def test_too_many_members_gives_one_archive_error(n, ok, monkeypatch, spy_open):
    monkeypatch.setattr(uploads, "MAX_ZIP_MEMBERS", 3)
    members = [(f"s{i}.png", _png(i)) for i in range(n)] + [("d/", b""), ("__MACOSX/._s0.png", b"j")]
    ups = read_bytes("many.zip", _zip(members))
    if ok:
        assert len(ups) == 3 and all(u.ok for u in ups)
    else:
        [up] = ups
        assert not up.ok and up.name == "many.zip" and spy_open == []
        assert up.error == "many.zip: the archive holds 4 files, above the limit of 3; split it into smaller archives"


def _zeros_member_zip(name: str, size: int, extra: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(name, "w") as f:
            chunk = bytes(2**20)
            for _ in range(size // 2**20):
                f.write(chunk)
        for n, d in extra:
            zf.writestr(n, d)
    return buf.getvalue()


def test_zip_bomb_member_is_refused_without_decompressing(spy_open):
    data = _zeros_member_zip("bomb.png", 20 * 2**20, [("good.png", _png(1))])
    assert len(data) < 100_000  # ~1000:1
    ups = read_bytes("bomb.zip", data)
    assert [u.name for u in ups] == ["bomb.zip/bomb.png", "bomb.zip/good.png"]
    assert "zip bomb" in ups[0].error and f"limit of {uploads.MAX_ZIP_RATIO}:1" in ups[0].error
    assert ups[0].error.startswith("bomb.zip/bomb.png: ") and "without decompressing" in ups[0].error
    assert ups[1].ok and spy_open == ["good.png"]


def test_member_declaring_more_than_the_upload_limit_is_refused_unread(monkeypatch, spy_open):
    monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", 2 * 2**20)
    data = _zeros_member_zip("big.bmp", 3 * 2**20, [("good.png", _png(1))])
    ups = read_bytes("b.zip", data)
    assert "declares 3.0 MiB uncompressed, above the upload limit of 2.0 MiB" in ups[0].error
    assert ups[1].ok and spy_open == ["good.png"]


def test_small_highly_compressible_members_are_not_taken_for_bombs():
    flat = _encode(np.full((200, 200, 3), 255, np.uint8), "BMP")  # 120 kB, deflates far beyond 100:1
    data = _zip([("flat.bmp", flat)], zipfile.ZIP_DEFLATED)
    assert len(flat) / len(data) > uploads.MAX_ZIP_RATIO
    [up] = read_bytes("flat.zip", data)
    assert up.ok and up.image.shape == (200, 200, 3)


def test_total_uncompressed_cap_stops_the_expansion(monkeypatch, spy_open):
    pngs = [_png(i) for i in range(5)]
    monkeypatch.setattr(uploads, "MAX_ZIP_TOTAL_BYTES", len(pngs[0]) + len(pngs[1]) + 10)
    ups = read_bytes("t.zip", _zip([(f"s{i}.png", p) for i, p in enumerate(pngs)]))
    assert [u.ok for u in ups] == [True, True, False]
    assert ups[2].name == "t.zip" and ups[2].error.startswith("t.zip: stopped before t.zip/s2.png")
    assert "3 remaining member(s) skipped" in ups[2].error
    assert spy_open == ["s0.png", "s1.png"]


def test_nested_zip_is_refused(spy_open):
    inner = _zip([("hidden_inside.png", _png(9))])
    ups = read_bytes("outer.zip", _zip([("a.png", _png(1)), ("inner.zip", inner), ("sneaky.png", inner)]))
    assert [u.name for u in ups] == ["outer.zip/a.png", "outer.zip/inner.zip", "outer.zip/sneaky.png"]
    assert ups[0].ok
    for up in ups[1:]:
        assert up.error == f"{up.name}: nested archives are not expanded; unzip it and upload its contents"
    assert "hidden_inside.png" not in spy_open


def _damaged_member_zip() -> bytes:
    data = bytearray(_zip([("a.png", _png(1, 32, 32))]))
    data[60:160] = bytes(100)  # inside a.png's stored bytes; the central directory stays valid
    return bytes(data)


def _encrypted_zip() -> bytes:
    data = bytearray(_zip([("secret.png", _png(1))]))
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # set the "encrypted" flag bit in both headers
        i = data.index(sig) + off
        data[i] |= 0x1
    return bytes(data)


@pytest.mark.parametrize("build,name,fragment", [
    (lambda: b"PK\x03\x04" + b"\xde\xad\xbe\xef" * 64, "broken.zip", "not a readable zip archive"),
    (lambda: _zip([("a.png", _png(1)), ("b.png", _png(2))])[:-30], "broken.zip", "not a readable zip archive"),
    (_damaged_member_zip, "broken.zip/a.png", "damaged"),
    (_encrypted_zip, "broken.zip/secret.png", "encrypted; re-create the archive without a password"),
], ids=["garbage", "truncated", "damaged-member", "encrypted"])
def test_corrupt_or_encrypted_zip_gives_one_clear_error(build, name, fragment):
    ups = read_bytes("broken.zip", build())
    assert len(ups) == 1 and not ups[0].ok
    assert ups[0].name == name and ups[0].error.startswith(f"{name}: ") and fragment in ups[0].error


def test_non_image_member_gets_the_loader_error():
    ups = read_bytes("mixed.zip", _zip([("readme.txt", b"hello, these are signs\n"), ("a.png", _png(1))]))
    assert ups[0].error == "mixed.zip/readme.txt: not an image file (or an unknown format)"
    assert ups[1].ok


# ----- paths -----

def test_read_paths_walks_nested_folders_in_sorted_order(tmp_path):
    root = tmp_path / "signs"
    for rel in ["b.png", "a/z.png", "a/b/c.png", "A.png", "c.JPG", "d.tiff", "notes.txt", ".hidden.png",
                "._b.png", ".git/x.png", "pack.zip"]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(_png(len(rel)) if not rel.endswith((".txt", ".zip", ".tiff")) else b"x")
    ups = read_paths([root])
    assert [u.name for u in ups] == ["signs/A.png", "signs/a/b/c.png", "signs/a/z.png", "signs/b.png",
                                     "signs/c.JPG", "signs/d.tiff"]
    assert [u.ok for u in ups] == [True] * 5 + [False]


def test_read_paths_mixes_files_folders_zips_and_missing_paths_in_the_order_given(tmp_path):
    (tmp_path / "one.png").write_bytes(_png(1))
    (tmp_path / "pack.zip").write_bytes(_zip([("in/x.png", _png(2))]))
    (tmp_path / "empty").mkdir()
    missing = tmp_path / "nope.png"
    ups = read_paths([tmp_path / "one.png", str(missing), tmp_path / "empty", tmp_path / "pack.zip"])
    assert [u.name for u in ups] == ["one.png", "nope.png", "pack.zip/in/x.png"]
    assert ups[0].ok and ups[2].ok
    assert ups[1].error.startswith("nope.png: no such file or folder") and str(missing) in ups[1].error
    assert ups[1].sha256 == "" and ups[1].image is None


def test_read_paths_refuses_a_single_path_string(tmp_path):
    with pytest.raises(ValueError, match=r"read_paths\(\[path\]\)"):
        read_paths(str(tmp_path))


def test_read_paths_does_not_follow_symlinks_inside_a_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = _png(42)
    (outside / "secret.png").write_bytes(secret)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "real.png").write_bytes(_png(1))
    os.symlink(outside / "secret.png", folder / "link.png")
    os.symlink(outside, folder / "linked_dir")
    ups = read_paths([folder])
    assert [u.name for u in ups] == ["in/link.png", "in/linked_dir", "in/real.png"]
    assert [u.ok for u in ups] == [False, False, True]
    assert all("symbolic link, not followed" in u.error for u in ups[:2])
    assert hashlib.sha256(secret).hexdigest() not in {u.sha256 for u in ups}
    # named explicitly on the command line, a symlink is the user's choice and is read
    [up] = read_paths([folder / "link.png"])
    assert up.ok and up.sha256 == hashlib.sha256(secret).hexdigest()


def test_read_paths_refuses_an_oversized_file_from_its_size(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "MAX_UPLOAD_BYTES", 100)
    (tmp_path / "big.png").write_bytes(_png(1))
    [up] = read_paths([tmp_path / "big.png"])
    assert not up.ok and "above the upload limit of 0.1 KiB" in up.error and up.sha256 == ""
