"""Read user uploads (single files, many files, folders on the CLI, zip archives) into decoded images.

Every input becomes one or more :class:`Upload` records. A bad file gets one clear message naming it, and the rest
of the batch goes on. Nothing here writes to disk: files are read, archives are read in memory member by member with
bounded reads and never extracted. Decoding goes through :func:`core.data.images.load_image`, so uploads obey the same
image rules as everything else (pixel limit checked from the header, CMYK / 16-bit / alpha / greyscale / palette to
RGB), and is followed by one downscale to :data:`MAX_SIDE`.

Zip rules (:func:`read_bytes` on an archive)
--------------------------------------------
- An archive is recognised by its content (zip magic or ``zipfile.is_zipfile``), never by its name.
- Members are read in archive order. Folders are skipped, and so are system entries (any path component
  ``__MACOSX``, ``Thumbs.db``, ``desktop.ini`` or starting with ``.``, e.g. ``.DS_Store``, ``._x.png``) - silently.
- A member named with a ``..`` component, an absolute path (``/x``, ``\\x``, ``C:x``) or a NUL is refused, unread.
- More than :data:`MAX_ZIP_MEMBERS` members (system entries not counted): one error for the whole archive.
- A member that declares more than ``config.MAX_UPLOAD_BYTES``, or (from :data:`ZIP_RATIO_MIN_BYTES` up) compresses
  more than :data:`MAX_ZIP_RATIO`:1, or is encrypted, is refused without being decompressed.
- Once the declared sizes of the members read would pass :data:`MAX_ZIP_TOTAL_BYTES`, expansion stops with one
  error saying how many members were skipped.
- Members are read with ``read(declared size + 1)``, so a lying header cannot make us inflate more than it declared.
- A member that is itself an archive is refused (nested archives are not expanded).
"""
from __future__ import annotations

import hashlib
import io
import lzma
import os
import re
import stat
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from core.base import config
from core.data.images import ImageError, load_image

#: Decoded images are shrunk (area averaging, aspect kept) so that their long side is at most this many pixels.
MAX_SIDE = 256
#: An archive with more file members than this is refused as a whole.
MAX_ZIP_MEMBERS = 5000
#: Expansion stops before the declared uncompressed sizes of the members read would pass this many bytes.
MAX_ZIP_TOTAL_BYTES = 512 * 2**20
#: A member whose uncompressed / compressed size ratio exceeds this is refused unread (the shape of a zip bomb).
MAX_ZIP_RATIO = 100
#: Members declaring fewer bytes than this skip the ratio check: a flat-colour BMP/PPM sign legitimately deflates
#: beyond 100:1, and inflating a small member costs little (the bounded read and the total cap still apply).
ZIP_RATIO_MIN_BYTES = 2**20
#: Display names are cut to this many characters, keeping the extension.
MAX_NAME_CHARS = 120
#: Suffixes picked up when walking a folder (compared lower-case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp", ".webp", ".gif", ".tif", ".tiff")
#: Path components that operating systems add to folders and archives; skipped silently (lower-case).
JUNK_NAMES = frozenset({"__macosx", "thumbs.db", "desktop.ini"})

_FALLBACK_NAME = "upload"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# What zipfile and its decompressors raise on damaged or unsupported members (bz2 raises OSError).
_ZIP_ERRORS = (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, OSError, ValueError, zlib.error,
               lzma.LZMAError)


@dataclass(frozen=True, eq=False)  # eq=False: comparing ndarrays field-wise is ambiguous; compare .sha256 instead
class Upload:
    """One uploaded image, decoded, or the reason it was not.

    Attributes
    ----------
    name : str
        Safe display name (see :func:`safe_name`); for an archive member or a file found in a folder,
        ``"archive.zip/inner/x.png"`` style.
    image : np.ndarray (H, W, 3) uint8 RGB with max(H, W) <= MAX_SIDE, or None when ``error`` is set.
    sha256 : str
        Hex SHA-256 of the file's original bytes; ``""`` when they were not read (missing, refused unread).
    error : str or None
        One message naming the file, what is wrong and the fix.
    """

    name: str
    image: np.ndarray | None
    sha256: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the image was decoded."""
        return self.error is None and self.image is not None


def safe_name(name: str) -> str:
    """Display name from an untrusted one.

    Keeps only the last path component (split on ``/`` and ``\\``; ``.`` and ``..`` do not count), drops NUL,
    control and format characters (U+202E could show ``gnp.exe`` as ``exe.png``), keeps non-ASCII letters,
    collapses whitespace, cuts to :data:`MAX_NAME_CHARS` keeping the extension, and gives ``"upload"`` if nothing
    is left. The result never contains ``/``, ``\\`` or NUL and is never ``.`` or ``..``.

    Examples
    --------
    >>> safe_name("../../etc/passwd"), safe_name("a/b\\\\c.png"), safe_name("..")
    ('passwd', 'c.png', 'upload')
    """
    parts = _components(str(name))
    return _cut(parts[-1]) if parts else _FALLBACK_NAME


def read_bytes(name: str, data: bytes) -> list[Upload]:
    """Decode one uploaded file: an image gives one :class:`Upload`, a zip archive one per member.

    Parameters
    ----------
    name : str
        The name the user's browser sent (untrusted; only shown, through :func:`safe_name`).
    data : bytes
        The file's content. Over ``config.MAX_UPLOAD_BYTES`` it is refused as a whole.

    Returns
    -------
    list of Upload
        Never empty for an image or a bad file; an archive holding only folders and system entries gives ``[]``.
        See the module docstring for the archive rules.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"read_bytes needs the file's bytes, got {type(data).__name__}; "
                         "pass uploaded_file.getvalue()")
    return _read_named(safe_name(name), bytes(data))


def read_paths(paths: Sequence[str | os.PathLike]) -> list[Upload]:
    """Decode files, folders and zip archives named on the command line, in the order given.

    Parameters
    ----------
    paths : sequence of paths
        A file (image or zip, told apart by content) is read like :func:`read_bytes`; a path given here is
        followed even if it is a symlink. A folder is walked recursively in sorted path order, picking up only
        :data:`IMAGE_SUFFIXES`; inside it, symlinks are not followed (each one with an image suffix, or pointing
        to a folder, gets an error), and hidden and system entries are skipped silently.

    Returns
    -------
    list of Upload
        A missing path gives one Upload with an error; an empty folder gives none.
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise ValueError(f"read_paths takes a list of paths, got the single path {paths!r}; "
                         "wrap it: read_paths([path])")
    out: list[Upload] = []
    for path in paths:
        out.extend(_read_path(Path(path)))
    return out


# ----- names -----

def _clean_text(text: str) -> str:
    """NFC, whitespace collapsed to single spaces, control/format/unassigned characters dropped."""
    text = unicodedata.normalize("NFC", text)
    kept = (" " if ch.isspace() else ch for ch in text
            if ch.isspace() or not unicodedata.category(ch).startswith("C"))
    return " ".join("".join(kept).split())


def _components(name: str) -> list[str]:
    """Cleaned, non-empty path components of an untrusted name; ``.`` and ``..`` dropped."""
    cleaned = (_clean_text(p) for p in re.split(r"[/\\]", name))
    return [c for c in cleaned if c not in ("", ".", "..")]


def _cut(name: str, limit: int | None = None) -> str:
    """``name`` cut to ``limit`` characters (default MAX_NAME_CHARS), keeping a short extension."""
    limit = MAX_NAME_CHARS if limit is None else limit
    if len(name) <= limit:
        return name
    stem, ext = os.path.splitext(name)
    if not stem or len(ext) > limit // 4:
        stem, ext = name, ""
    return stem[: limit - len(ext)].rstrip() + ext


def _inner_name(prefix: str, parts: Sequence[str]) -> str:
    """``prefix/dir/file`` display name for a file inside an archive or a folder (only the file if too long)."""
    kept = _components("/".join(parts))
    if not kept:
        return f"{prefix}/{_FALLBACK_NAME}"
    inner = "/".join(kept[:-1] + [_cut(kept[-1])])
    return f"{prefix}/{inner if len(inner) <= MAX_NAME_CHARS else _cut(kept[-1])}"


def _shown(raw: str) -> str:
    """An untrusted raw name for an error message: escaped by repr, cut."""
    text = repr(raw)
    return text if len(text) <= MAX_NAME_CHARS else text[: MAX_NAME_CHARS - 1] + "…"


def _split(raw: str) -> list[str]:
    return re.split(r"[/\\]", raw)


def _is_junk(parts: Sequence[str]) -> bool:
    """System entries (``__MACOSX/``, ``Thumbs.db``, ``.DS_Store``, ``._x.png``, ``.git/``), skipped silently."""
    return any(p.lower() in JUNK_NAMES or (p.startswith(".") and p not in (".", "..")) for p in parts)


def _is_unsafe(raw: str) -> bool:
    """A member path that would escape an extraction folder: ``..``, absolute, drive letter, UNC, or a NUL."""
    if "\x00" in raw or raw.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", raw):
        return True
    return ".." in _split(raw)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


def _too_big(name: str, size: int) -> str:
    return (f"{name}: the file is {_mib(size)}, above the upload limit of {_mib(config.MAX_UPLOAD_BYTES)}; "
            "downscale the image or split the archive")


# ----- decoding -----

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _downscale(image: np.ndarray) -> np.ndarray:
    """Shrink (H, W, 3) so that max(H, W) <= MAX_SIDE, aspect kept; smaller images are returned as they are."""
    h, w = image.shape[:2]
    if max(h, w) <= MAX_SIDE:
        return image
    scale = MAX_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # cv2 takes (width, height)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _decode(name: str, data: bytes) -> Upload:
    sha = _sha(data)
    try:
        image = _downscale(load_image(data, name=name))
    except ImageError as e:
        return Upload(name, None, sha, str(e))
    except Exception as e:  # PIL raises assorted types (struct.error, IndexError) on fuzzed files; isolate each one
        return Upload(name, None, sha, f"{name}: the image could not be decoded ({type(e).__name__}: {e}); "
                                       "re-save it as PNG or JPEG")
    return Upload(name, image, sha)


def _looks_like_zip(data: bytes) -> bool:
    # The magic catches damaged archives too (is_zipfile needs the end record), so they get a zip message.
    return data[:4] in _ZIP_MAGIC or zipfile.is_zipfile(io.BytesIO(data))


def _read_named(name: str, data: bytes) -> list[Upload]:
    """One file's bytes under an already safe display name."""
    if len(data) > config.MAX_UPLOAD_BYTES:
        return [Upload(name, None, "", _too_big(name, len(data)))]
    if _looks_like_zip(data):
        return _read_zip(name, data)
    return [_decode(name, data)]


# ----- archives -----

def _read_zip(archive: str, data: bytes) -> list[Upload]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except _ZIP_ERRORS as e:
        return [Upload(archive, None, _sha(data), f"{archive}: not a readable zip archive ({e}); "
                                                  "re-create the archive and upload it again")]
    with zf:
        members = [i for i in zf.infolist() if not _is_dir(i)
                   and (_is_unsafe(i.orig_filename) or not _is_junk(_split(i.orig_filename)))]
        if len(members) > MAX_ZIP_MEMBERS:
            return [Upload(archive, None, _sha(data),
                           f"{archive}: the archive holds {len(members):,} files, above the limit of "
                           f"{MAX_ZIP_MEMBERS:,}; split it into smaller archives")]
        return _expand(zf, archive, members)


def _is_dir(info: zipfile.ZipInfo) -> bool:
    return info.is_dir() or info.orig_filename.endswith("\\")


def _expand(zf: zipfile.ZipFile, archive: str, members: list[zipfile.ZipInfo]) -> list[Upload]:
    """Read the members in order, refusing bad ones unread, until the total declared size would pass the cap."""
    out: list[Upload] = []
    total = 0
    for k, info in enumerate(members):
        name = _inner_name(archive, _split(info.orig_filename))
        problem = _member_problem(info, name)
        if problem:
            out.append(Upload(name, None, "", problem))
            continue
        if total + info.file_size > MAX_ZIP_TOTAL_BYTES:
            out.append(Upload(archive, None, "",
                              f"{archive}: stopped before {name}: the members read so far hold {_mib(total)} and "
                              f"it would pass the limit of {_mib(MAX_ZIP_TOTAL_BYTES)} uncompressed per archive; "
                              f"{len(members) - k} remaining member(s) skipped; split the archive"))
            break
        total += info.file_size
        out.append(_read_member(zf, info, name))
    return out


def _member_problem(info: zipfile.ZipInfo, name: str) -> str | None:
    """Why a member is refused from its header alone, or None."""
    raw = info.orig_filename  # before zipfile cut it at a NUL
    if _is_unsafe(raw):
        return (f"{name}: unsafe path in archive ({_shown(raw)}) refused; "
                "members must have relative paths without '..'")
    if info.flag_bits & 0x1:
        return f"{name}: the member is encrypted; re-create the archive without a password"
    if info.file_size > config.MAX_UPLOAD_BYTES:
        return (f"{name}: declares {_mib(info.file_size)} uncompressed, above the upload limit of "
                f"{_mib(config.MAX_UPLOAD_BYTES)}; refused without decompressing; downscale the image")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size >= ZIP_RATIO_MIN_BYTES and ratio > MAX_ZIP_RATIO:
        return (f"{name}: compresses {ratio:,.0f}:1, above the limit of {MAX_ZIP_RATIO}:1 (the shape of a zip "
                "bomb); refused without decompressing; store images as PNG or JPEG")
    return None


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> Upload:
    try:
        with zf.open(info) as f:
            data = f.read(info.file_size + 1)  # bounded: never inflate more than the header declared
    except _ZIP_ERRORS as e:
        return Upload(name, None, "", f"{name}: the member is damaged ({e}); re-create the archive")
    if len(data) > info.file_size:
        return Upload(name, None, "", f"{name}: the member holds more data than its header declares; "
                                      "the archive is damaged or malicious; re-create it")
    if _looks_like_zip(data):
        return Upload(name, None, _sha(data), f"{name}: nested archives are not expanded; "
                                              "unzip it and upload its contents")
    return _decode(name, data)


# ----- paths -----

def _read_path(path: Path) -> list[Upload]:
    name = safe_name(str(path))
    try:
        is_dir = path.is_dir()  # follows a symlink named on the command line: the user chose it
    except OSError as e:
        return [Upload(name, None, "", f"{name}: cannot read {_shown(str(path))} ({e.strerror or e})")]
    if not is_dir:
        return _read_file(path, name)
    prefix = safe_name(path.resolve().name)  # '.' shows as the folder's own name
    out: list[Upload] = []
    for parts, problem in _walk(path):
        inner = _inner_name(prefix, parts) if parts else prefix
        if problem:
            out.append(Upload(inner, None, "", f"{inner}: {problem}"))
        else:
            out.extend(_read_file(path.joinpath(*parts), inner))
    return out


def _read_file(path: Path, name: str) -> list[Upload]:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            return [Upload(name, None, "", f"{name}: not a regular file; give an image, a zip archive or a folder")]
        if st.st_size > config.MAX_UPLOAD_BYTES:
            return [Upload(name, None, "", _too_big(name, st.st_size))]
        with open(path, "rb") as f:
            data = f.read(config.MAX_UPLOAD_BYTES + 1)  # bounded: the file may have grown since stat
    except FileNotFoundError:
        return [Upload(name, None, "", f"{name}: no such file or folder {_shown(str(path))}; check the path")]
    except OSError as e:
        return [Upload(name, None, "", f"{name}: cannot read {_shown(str(path))} ({e.strerror or e}); "
                                       "check its permissions")]
    return _read_named(name, data)


def _walk(root: Path) -> list[tuple[tuple[str, ...], str | None]]:
    """(relative parts, problem or None) of the image files under ``root``, sorted; symlinks not followed."""
    found: list[tuple[tuple[str, ...], str | None]] = []
    stack: list[tuple[str, ...]] = [()]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(root.joinpath(*rel)) as it:
                entries = list(it)
        except OSError as e:
            found.append((rel, f"cannot list the folder ({e.strerror or e}); check its permissions"))
            continue
        for entry in entries:
            parts = rel + (entry.name,)
            is_image = entry.name.lower().endswith(IMAGE_SUFFIXES)
            if _is_junk((entry.name,)):
                continue
            if entry.is_symlink():
                if is_image or entry.is_dir():
                    found.append((parts, "symbolic link, not followed; copy the file or folder itself instead"))
            elif entry.is_dir(follow_symlinks=False):
                stack.append(parts)
            elif is_image and entry.is_file(follow_symlinks=False):
                found.append((parts, None))
    return sorted(found, key=lambda item: item[0])

