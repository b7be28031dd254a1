"""Sampling frames from a video file (mp4, webm, mov, ...) with PyAV, one decoded frame at a time.

A 2-hour dashcam video must not fill memory: :func:`sample_frames` decodes frame by frame, converts only the frames
it samples to RGB, and stops at a frame cap (:data:`MAX_VIDEO_FRAMES`) with a note from :func:`planned_frames` that
says how much of the video was covered and how to cover the rest. Frames come out upright: a phone video's display
rotation (the display matrix PyAV reads from the container) is applied. Flips in the display matrix are not.

Every file problem raises :class:`VideoError` naming the file, what is wrong and the fix; a bad sampling option
raises a plain ``ValueError``.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
#: Default cap on the frames analysed (sampled, not decoded) per video: 5 min at 2 frames/s.
MAX_VIDEO_FRAMES = 600
#: Larger files are refused before decoding.
MAX_VIDEO_BYTES = 1024 * 2**20
#: Decoding that ends this much (seconds, or frame periods, whichever is more) before the declared duration means
#: a truncated file; real files whose audio outlasts the video by a few frames stay within it.
TRUNCATED_SLACK_S = 0.5
TRUNCATED_SLACK_FRAMES = 3
#: :func:`write_video`'s codec by suffix (webm allows only VP8/VP9/AV1), and its bit rate in bits per pixel per
#: frame: 0.5 keeps a 640 x 480 natural scene within 3.5 grey levels of the original (measured, mpeg4 and libvpx).
WRITE_CODECS = {".webm": "libvpx"}
DEFAULT_WRITE_CODEC = "mpeg4"
WRITE_BITS_PER_PIXEL = 0.5


class VideoError(ValueError):
    """A file that is not a usable video; the message names the file, what is wrong and the fix."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns from a video's header and its first frame."""
    #: the upright frame size in pixels (display rotation applied)
    width: int
    height: int
    #: the file's frame rate (frames per second; 0.0 when the file does not say)
    fps: float
    #: seconds (0.0 when the file does not say)
    duration_s: float
    #: frames in the file: the container's count, else duration x fps (an estimate)
    frame_count: int
    #: the display rotation applied to each frame, degrees counter-clockwise (0, 90, 180 or -90)
    rotation: int = 0
    #: the file, for messages
    name: str = "the video"


@dataclass(frozen=True)
class Frame:
    """One sampled frame."""
    #: the frame's number in the file (0-based, decode order)
    index: int
    #: seconds from the start of the video stream
    time_s: float
    #: (H, W, 3) uint8 RGB, upright
    image: np.ndarray


def looks_like_video(name: str) -> bool:
    """Whether ``name`` has one of :data:`VIDEO_SUFFIXES` (case-insensitive)."""
    return Path(str(name)).suffix.lower() in VIDEO_SUFFIXES


def probe(source: bytes | os.PathLike | str, *, name: str) -> VideoInfo:
    """Read a video's size, frame rate, duration and rotation, decoding only its first frame.

    Parameters
    ----------
    source : bytes or path
    name : str
        Shown in messages.

    Raises
    ------
    VideoError
        An empty, oversized, unreadable, truncated or corrupt file, or one without a video stream.
    """
    fp = _checked_source(source, name)
    with _open(fp, name) as (container, stream):
        fps, duration, count, start = _stream_facts(container, stream)
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as e:
            raise VideoError(f"{name}: the first frame cannot be decoded ({_reason(e)}): the file is corrupt; "
                             "export or copy the video again") from None
        if first is None:
            raise VideoError(f"{name}: no frame could be decoded: the file is truncated or corrupt; "
                             "export or copy the video again")
        steps = _rotation_steps(first)
        w, h = (first.height, first.width) if steps % 2 else (first.width, first.height)
        return VideoInfo(width=w, height=h, fps=fps, duration_s=duration, frame_count=count,
                         rotation=(0, 90, 180, -90)[steps], name=name)


def planned_frames(info: VideoInfo, *, fps: float, max_frames: int = MAX_VIDEO_FRAMES) -> tuple[int, str | None]:
    """How many frames :func:`sample_frames` will yield for ``info`` at ``fps``, and a note when the cap cuts the
    video short (None otherwise).

    The rate used is ``min(fps, info.fps)``: sampling faster than the file's own rate gives every frame once.
    A video of unknown duration plans ``max_frames`` frames and no note.
    """
    _check_sampling(fps, max_frames)
    rate = min(fps, info.fps) if info.fps > 0 else fps
    if info.duration_s <= 0:
        return max_frames, None
    total = max(1, math.ceil(info.duration_s * rate - 1e-9))
    if total <= max_frames:
        return total, None
    covered = max_frames / rate
    return max_frames, (
        f"{info.name} is {_format_duration(info.duration_s)} long: analysed the first {max_frames:,} sampled frames "
        f"(the first {_format_duration(covered)} at {_format_rate(rate)}); to cover all of it, sample at "
        f"{_format_rate(max_frames / info.duration_s, digits=2)} or less, or cut it into parts of at most "
        f"{_format_duration(covered)}")


def sample_frames(source: bytes | os.PathLike | str, *, name: str, fps: float,
                  max_frames: int = MAX_VIDEO_FRAMES) -> Iterator[Frame]:
    """Yield upright RGB frames at about ``fps`` per second of video, by timestamp, at most ``max_frames`` of them.

    Each sampling time ``k / fps`` takes the first frame within half a frame period of it (or after it), so sampling
    at or above the file's frame rate yields every frame once. Only one decoded frame is held at a time.

    Parameters
    ----------
    source : bytes or path
    name : str
        Shown in messages.
    fps : float
        Frames to sample per second of video, > 0.
    max_frames : int
        Stop after this many sampled frames (>= 1); :func:`planned_frames` gives the note to show when it cuts.

    Raises
    ------
    ValueError
        ``fps`` <= 0 or ``max_frames`` < 1 (at the call, before any decoding).
    VideoError
        A bad file: at the call for an empty or oversized one; while iterating for an unreadable one, and, after the
        frames decoded before the damage were yielded, for a file that is truncated or corrupt part-way.
    """
    _check_sampling(fps, max_frames)
    return _sample(_checked_source(source, name), name, float(fps), int(max_frames))


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], *, fps: float, codec: str | None = None,
                rotation: int = 0) -> Path:
    """Encode RGB frames into a video file (for tests, the demo and the benchmark), atomically.

    Parameters
    ----------
    path : path
        Its suffix picks the container (``.mp4``, ``.webm``, ``.mkv``, ``.mov``, ``.avi``).
    frames : iterable of (H, W, 3) uint8
        All the same size, H and W even (the encoder's 4:2:0 chroma needs it); consumed one at a time.
    fps : float
        The file's frame rate, > 0.
    codec : str, optional
        An FFmpeg encoder; default ``libvpx`` for ``.webm``, ``mpeg4`` otherwise.
    rotation : int
        Display rotation to record, degrees counter-clockwise (what phones write for a portrait video).

    Returns
    -------
    Path of the written file.
    """
    path = Path(path)
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number of frames per second; got {fps}")
    codec = codec or WRITE_CODECS.get(path.suffix.lower(), DEFAULT_WRITE_CODEC)
    if codec not in av.codecs_available:
        raise ValueError(f"codec {codec!r} is not in this FFmpeg build; use mpeg4 (.mp4) or libvpx (.webm)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        with av.open(str(tmp), "w") as container:
            n = _encode_all(container, frames, codec=codec, fps=fps, rotation=rotation)
        if n == 0:
            raise ValueError(f"{path.name}: no frames to write; pass at least one (H, W, 3) uint8 frame")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# -- internals ------------------------------------------------------------------------------------------------------

def _check_sampling(fps: float, max_frames: int) -> None:
    if not (isinstance(fps, (int, float)) and fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number of frames to sample per second of video; got {fps!r} "
                         "(2 samples a dashcam video densely enough to follow a sign)")
    if not (isinstance(max_frames, (int, np.integer)) and max_frames >= 1):
        raise ValueError(f"max_frames must be a whole number >= 1; got {max_frames!r} (default {MAX_VIDEO_FRAMES})")


def _checked_source(source, name: str):
    """The source as something PyAV opens (a path string or a BytesIO), after the size checks."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        size, fp = len(source), io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise VideoError(f"{name}: no such file ({path})")
        size, fp = path.stat().st_size, str(path)
    if size == 0:
        raise VideoError(f"{name}: the file is empty (0 bytes); upload or copy the video again")
    if size > MAX_VIDEO_BYTES:
        raise VideoError(f"{name}: the file is {_format_size(size)}, above the limit of "
                         f"{_format_size(MAX_VIDEO_BYTES)}; cut the video into shorter parts")
    return fp


@contextlib.contextmanager
def _open(fp, name: str) -> Iterator[tuple]:
    """The container and its first video stream, closed on exit; VideoError when there is none."""
    head = _head(fp)
    try:
        container = av.open(fp, mode="r", metadata_errors="replace")
    except av.error.FFmpegError as e:
        raise VideoError(_unreadable(name, head, e)) from None
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            if not kinds:
                raise VideoError(_unreadable(name, head, None))
            raise VideoError(f"{name}: the file has no video stream (only {', '.join(kinds)}); "
                             "upload a video with pictures")
        yield container, container.streams.video[0]


def _head(fp) -> bytes:
    if isinstance(fp, io.BytesIO):
        return fp.getvalue()[:512]
    with open(fp, "rb") as f:
        return f.read(512)


def _unreadable(name: str, head: bytes, err: Exception | None) -> str:
    """Why a file did not open, from its first bytes: a cut MP4/WebM, a text file, or something else."""
    why = f" (FFmpeg: {_reason(err)})" if err is not None else ""
    if head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3":
        kind = "an MP4/MOV" if head[4:8] == b"ftyp" else "a WebM/MKV"
        return (f"{name}: {kind} file that cannot be read{why}: it is truncated or corrupt (an upload or copy cut "
                "short); export or copy the video again")
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return f"{name}: this is a text file, not a video; upload the video file itself ({_SUFFIX_LIST})"
        except UnicodeDecodeError:
            pass
    return f"{name}: not a video file FFmpeg can read{why}; upload one of {_SUFFIX_LIST}"


_SUFFIX_LIST = ", ".join(VIDEO_SUFFIXES)


def _reason(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err)


def _format_size(n: int) -> str:
    """``"1.5 GiB"``, ``"120 MiB"``, ``"3,645 bytes"``."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _format_duration(seconds: float) -> str:
    """``"2 h 0 min"``, ``"10 min"``, ``"1 min 30 s"``, ``"12.5 s"``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    if s >= 60:
        return f"{s // 60} min" + (f" {s % 60} s" if s % 60 else "")
    return f"{seconds:.3g} s"


def _format_rate(rate: float, *, digits: int = 3) -> str:
    """``"1 frame/s"``, ``"2 frames/s"``, ``"0.083 frames/s"``."""
    text = f"{rate:.{digits}g}"
    return f"{text} frame/s" if text == "1" else f"{text} frames/s"


def _stream_facts(container, stream) -> tuple[float, float, int, float]:
    """(fps, duration s, frame count, start time s) of a video stream, each 0 when the file does not say."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    tb = stream.time_base
    if stream.duration and tb:
        duration = float(stream.duration * tb)
    elif container.duration:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    count = int(stream.frames or round(duration * fps))
    start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    return fps, duration, count, start


def _rotation_steps(frame) -> int:
    """Quarter turns counter-clockwise the display matrix asks for (0-3); 0 for an angle not a multiple of 90."""
    try:
        degrees = frame.rotation
    except (AttributeError, av.error.FFmpegError):
        return 0
    if not degrees or round(degrees) % 90:
        return 0
    return (round(degrees) // 90) % 4


def _upright(frame) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    k = _rotation_steps(frame)
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def _sample(fp, name: str, fps: float, max_frames: int) -> Iterator[Frame]:
    with _open(fp, name) as (container, stream):
        vfps, duration, _, start = _stream_facts(container, stream)
        period, eps = 1.0 / fps, (0.5 / vfps if vfps > 0 else 0.0)
        next_t, sampled, last_t = 0.0, 0, None
        try:
            for index, frame in enumerate(container.decode(stream)):
                t = max(0.0, frame.time - start) if frame.time is not None else index / (vfps or fps)
                last_t = t
                if t + eps < next_t:
                    continue
                yield Frame(index=index, time_s=t, image=_upright(frame))
                sampled += 1
                if sampled >= max_frames:
                    return
                next_t = (math.floor((t + eps) / period) + 1) * period
        except av.error.FFmpegError as e:
            where = f"after {last_t:.1f} s" if last_t is not None else "at the first frame"
            raise VideoError(f"{name}: decoding failed {where} ({_reason(e)}): the file is corrupt; export or copy "
                             "the video again") from None
        _check_complete(name, last_t, duration, vfps)


def _check_complete(name: str, last_t: float | None, duration: float, vfps: float) -> None:
    """Raise VideoError when decoding ended well before the duration the file declares (a cut or damaged file)."""
    if last_t is None:
        raise VideoError(f"{name}: no frame could be decoded: the file is truncated or corrupt; "
                         "export or copy the video again")
    frame_s = 1.0 / vfps if vfps > 0 else 0.0
    reached = last_t + frame_s
    if duration > 0 and duration - reached > max(TRUNCATED_SLACK_S, TRUNCATED_SLACK_FRAMES * frame_s):
        raise VideoError(f"{name}: the pictures stop at {reached:.1f} s of the {duration:.1f} s the file declares: "
                         "it is truncated or corrupt (frames up to there were read); export or copy it again")


def _encode_all(container, frames: Iterable[np.ndarray], *, codec: str, fps: float, rotation: int) -> int:
    stream = None
    n = 0
    for img in frames:
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"frame {n}: expected (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
        h, w = img.shape[:2]
        if stream is None:
            if h % 2 or w % 2:
                raise ValueError(f"frames are {w}x{h}: width and height must be even for the encoder's 4:2:0 "
                                 "chroma; crop or pad a pixel")
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.bit_rate = max(1, int(w * h * fps * WRITE_BITS_PER_PIXEL))
            if rotation:
                stream.set_display_rotation(rotation)
        elif (w, h) != (stream.width, stream.height):
            raise ValueError(f"frame {n} is {w}x{h}, the first was {stream.width}x{stream.height}; "
                             "every frame must have the same size")
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
            container.mux(packet)
        n += 1
    if stream is not None:
        for packet in stream.encode():
            container.mux(packet)
    return n
