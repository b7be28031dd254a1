"""Video frame sampling (core.detection.video): probing, sampling by timestamp, the frame cap and its note, display
rotation, and a clear VideoError for every bad file."""
from __future__ import annotations

import math

import av
import numpy as np
import pytest

from core.detection import video
from core.detection.video import Frame, VideoError, VideoInfo, planned_frames, probe, sample_frames, write_video

W, H, FPS, N = 64, 48, 10, 40   # a 4 s clip
RED = (220, 30, 30)


def square_frames(n: int = N, *, w: int = W, h: int = H):
    """Frames with a red 16 px square whose left edge is at x = 2 + i in frame i, on grey."""
    for i in range(n):
        img = np.full((h, w, 3), 90, np.uint8)
        img[8:24, 2 + i:18 + i] = RED
        yield img


def red_centre_x(img: np.ndarray) -> float:
    mask = (img[..., 0] > 160) & (img[..., 1] < 100) & (img[..., 2] < 100)
    return float(np.nonzero(mask)[1].mean())


@pytest.fixture(params=[".mp4", ".webm"])
def clip(request, tmp_path):
    return write_video(tmp_path / f"clip{request.param}", square_frames(), fps=FPS)


@pytest.fixture
def mp4(tmp_path):
    return write_video(tmp_path / "clip.mp4", square_frames(), fps=FPS)


@pytest.mark.parametrize("name, expected", [("a.mp4", True), ("B.WEBM", True), ("c.Mov", True), ("d.mkv", True),
                                            ("e.avi", True), ("f.m4v", True), ("g.png", False), ("mp4", False),
                                            ("h.mp4.txt", False)])
def test_looks_like_video(name, expected):
    assert video.looks_like_video(name) is expected


def test_probe_reads_size_rate_duration_and_count(clip):
    info = probe(clip, name=clip.name)
    assert info == VideoInfo(width=W, height=H, fps=10.0, duration_s=pytest.approx(4.0, abs=0.05), frame_count=N,
                             rotation=0, name=clip.name)


@pytest.mark.parametrize("fps, expected_indices", [
    (1, [0, 10, 20, 30]),
    (2, [0, 5, 10, 15, 20, 25, 30, 35]),
    (4, [0, 2, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27, 30, 32, 35, 37]),
    (10, list(range(N))),
    (30, list(range(N))),   # above the file's rate: every frame once
])
def test_sample_frames_at_several_rates(clip, fps, expected_indices):
    frames = list(sample_frames(clip, name=clip.name, fps=fps))
    assert [f.index for f in frames] == expected_indices
    assert [f.time_s for f in frames] == pytest.approx([i / FPS for i in expected_indices], abs=1e-6)
    assert planned_frames(probe(clip, name=clip.name), fps=fps) == (len(expected_indices), None)
    for f in frames:
        assert isinstance(f, Frame) and f.image.shape == (H, W, 3) and f.image.dtype == np.uint8
        # the frame's own picture, in RGB order: the square's centre is at 9.5 + index
        assert red_centre_x(f.image) == pytest.approx(9.5 + f.index, abs=0.75)


def test_bytes_and_path_give_the_same_frames(clip):
    from_path = list(sample_frames(clip, name=clip.name, fps=2))
    from_bytes = list(sample_frames(clip.read_bytes(), name=clip.name, fps=2))
    assert [f.index for f in from_bytes] == [f.index for f in from_path]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(from_path, from_bytes))
    assert probe(clip.read_bytes(), name=clip.name) == probe(clip, name=clip.name)


def test_max_frames_stops_sampling(clip):
    frames = list(sample_frames(clip, name=clip.name, fps=10, max_frames=7))
    assert [f.index for f in frames] == list(range(7))
    assert planned_frames(probe(clip, name=clip.name), fps=10, max_frames=7)[0] == 7


def test_the_cap_note_on_a_two_hour_video(tmp_path):
    # 7,200 frames of 32 x 32 at 1 frame/s: 2 h of video in ~250 kB, written in a couple of seconds
    path = write_video(tmp_path / "drive.mp4", (np.full((32, 32, 3), i % 250, np.uint8) for i in range(7200)), fps=1)
    info = probe(path, name="drive.mp4")
    assert (info.duration_s, info.frame_count) == (pytest.approx(7200, abs=1), 7200)
    n, note = planned_frames(info, fps=1)
    assert n == video.MAX_VIDEO_FRAMES == 600
    assert note == ("drive.mp4 is 2 h 0 min long: analysed the first 600 sampled frames (the first 10 min at "
                    "1 frame/s); to cover all of it, sample at 0.083 frames/s or less, or cut it into parts of at "
                    "most 10 min")
    frames = sample_frames(path, name="drive.mp4", fps=1)
    last = None
    count = 0
    for last in frames:
        count += 1
    assert count == 600 and last.index == 599 and last.time_s == pytest.approx(599)


@pytest.mark.parametrize("info, fps, max_frames, expected", [
    (VideoInfo(1280, 720, 30.0, 7200.0, 216000, name="clip.mp4"), 2, 600,
     (600, "clip.mp4 is 2 h 0 min long: analysed the first 600 sampled frames (the first 5 min at 2 frames/s); "
           "to cover all of it, sample at 0.083 frames/s or less, or cut it into parts of at most 5 min")),
    (VideoInfo(640, 480, 25.0, 90.0, 2250, name="c.webm"), 0.5, 20,
     (20, "c.webm is 1 min 30 s long: analysed the first 20 sampled frames (the first 40 s at 0.5 frames/s); "
          "to cover all of it, sample at 0.22 frames/s or less, or cut it into parts of at most 40 s")),
    (VideoInfo(640, 480, 25.0, 60.0, 1500), 2, 600, (120, None)),
    (VideoInfo(640, 480, 5.0, 60.0, 300), 10, 600, (300, None)),     # capped at the file's own rate
    (VideoInfo(640, 480, 0.0, 0.0, 0), 2, 50, (50, None)),            # unknown length: the cap
])
def test_planned_frames(info, fps, max_frames, expected):
    assert planned_frames(info, fps=fps, max_frames=max_frames) == expected


@pytest.mark.parametrize("rotation, shape, corner", [(90, (W, H, 3), "bottom-left"), (-90, (W, H, 3), "top-right"),
                                                     (180, (H, W, 3), "bottom-right")])
def test_display_rotation_is_applied(tmp_path, rotation, shape, corner):
    def marked():
        for _ in range(3):
            img = np.full((H, W, 3), 60, np.uint8)
            img[:8, :8] = 255   # top-left as coded
            yield img
    path = write_video(tmp_path / "phone.mp4", marked(), fps=10, rotation=rotation)
    info = probe(path, name="phone.mp4")
    assert (info.height, info.width, 3) == shape and info.rotation == rotation
    img = next(sample_frames(path, name="phone.mp4", fps=1)).image
    assert img.shape == shape and img.flags.c_contiguous
    ys, xs = np.nonzero(img[..., 0] > 200)
    top, left = ys.mean() < shape[0] / 2, xs.mean() < shape[1] / 2
    assert {"bottom-left": (False, True), "top-right": (True, False), "bottom-right": (False, False)}[corner] \
        == (top, left)


# -- bad input ------------------------------------------------------------------------------------------------------

def both(source, name):
    """Run probe and a full sampling on ``source``; the VideoError messages (None where it read fine)."""
    out = []
    for call in (lambda: probe(source, name=name), lambda: list(sample_frames(source, name=name, fps=2))):
        try:
            call()
            out.append(None)
        except VideoError as e:
            out.append(str(e))
    return out


def test_zero_length_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for source in (empty, b""):
        for msg in both(source, "empty.mp4"):
            assert msg == "empty.mp4: the file is empty (0 bytes); upload or copy the video again"


def test_text_file_named_mp4():
    for msg in both(b"not a video\n" * 50, "notes.mp4"):
        assert msg.startswith("notes.mp4: this is a text file, not a video; upload the video file itself")


def test_other_bytes_are_not_a_video():
    for msg in both(bytes(range(256)) * 8, "noise.mp4"):
        assert msg.startswith("noise.mp4: not a video file FFmpeg can read") and ".webm" in msg


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_mp4(mp4, keep):
    # PyAV writes the MP4 index (moov) at the end, as phones do: a cut file has none
    data = mp4.read_bytes()
    for msg in both(data[:int(len(data) * keep)], "cut.mp4"):
        assert msg.startswith("cut.mp4: an MP4/MOV file that cannot be read") and "truncated or corrupt" in msg


def test_truncated_webm_yields_what_is_there_then_raises(tmp_path):
    path = write_video(tmp_path / "c.webm", square_frames(), fps=FPS)
    data = path.read_bytes()[:path.stat().st_size // 2]
    assert probe(data, name="cut.webm").duration_s == pytest.approx(4.0, abs=0.05)   # the header is intact
    got = []
    with pytest.raises(VideoError, match=r"cut.webm: the pictures stop at [\d.]+ s of the 4.0 s the file declares: "
                                         r"it is truncated or corrupt"):
        for f in sample_frames(data, name="cut.webm", fps=FPS):
            got.append(f.index)
    assert 0 < len(got) < N and got == list(range(len(got)))


def test_corrupt_middle_of_a_video(tmp_path):
    rng = np.random.default_rng(0)
    path = write_video(tmp_path / "noise.mp4", (rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(60)),
                       fps=FPS)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    with pytest.raises(VideoError, match=r"bad.mp4: decoding failed after [\d.]+ s .*: the file is corrupt"):
        list(sample_frames(bytes(data), name="bad.mp4", fps=FPS))


def test_a_file_without_a_video_stream(tmp_path):
    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        for _ in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 8000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    for msg in both(path, "voice.mp4"):
        assert msg == "voice.mp4: the file has no video stream (only audio); upload a video with pictures"


def test_a_missing_file_and_an_oversized_one(tmp_path, mp4, monkeypatch):
    assert both(tmp_path / "gone.mp4", "gone.mp4")[0].startswith("gone.mp4: no such file")
    monkeypatch.setattr(video, "MAX_VIDEO_BYTES", 1000)
    size = mp4.stat().st_size
    for msg in both(mp4, "big.mp4") + both(mp4.read_bytes(), "big.mp4"):
        assert msg == (f"big.mp4: the file is {size:,} bytes, above the limit of 1,000 bytes; "
                       "cut the video into shorter parts")


@pytest.mark.parametrize("kwargs, match", [({"fps": 0}, "fps must be a positive"), ({"fps": -1}, "fps"),
                                           ({"fps": math.nan}, "fps"), ({"fps": math.inf}, "fps"),
                                           ({"fps": 2, "max_frames": 0}, "max_frames must be a whole number >= 1"),
                                           ({"fps": 2, "max_frames": 2.5}, "max_frames")])
def test_bad_sampling_options_raise_at_the_call(mp4, kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        sample_frames(mp4, name=mp4.name, **kwargs)   # not iterated: the check is eager
    assert not isinstance(e.value, VideoError)
    with pytest.raises(ValueError, match=match):
        planned_frames(VideoInfo(64, 48, 10.0, 4.0, 40), **kwargs)


def test_write_video_refuses_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="width and height must be even"):
        write_video(tmp_path / "odd.mp4", [np.zeros((33, 32, 3), np.uint8)], fps=5)
    with pytest.raises(ValueError, match="frame 1 is 32x16, the first was 32x32"):
        write_video(tmp_path / "mixed.mp4", [np.zeros((32, 32, 3), np.uint8), np.zeros((16, 32, 3), np.uint8)], fps=5)
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\) uint8"):
        write_video(tmp_path / "grey.mp4", [np.zeros((32, 32), np.uint8)], fps=5)
    with pytest.raises(ValueError, match="no frames to write"):
        write_video(tmp_path / "none.mp4", [], fps=5)
    with pytest.raises(ValueError, match="codec 'nope'"):
        write_video(tmp_path / "x.mp4", square_frames(2), fps=5, codec="nope")
    with pytest.raises(ValueError, match="fps must be a positive"):
        write_video(tmp_path / "x.mp4", square_frames(2), fps=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == []   # nothing left behind, not even a partial file
