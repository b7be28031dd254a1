"""Detection core: boxes and NMS, AP, the scene generator, the detector's targets/decoding/checkpoint, and the
pipeline's box mapping (EXIF rotation, downscaled search) and bad-input handling."""
from __future__ import annotations

import hashlib
import io
import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from cli_support import run_cli
from core.detection import boxes as bx
from core.detection import metrics, pipeline, scenes
from core.detection.classical import ColourDetector
from core.detection.detector import (STRIDE, HeatmapNet, LearnedDetector, decode, load_detector_file, make_targets,
                                     save_detector)
from core.detection.results import Detection, FileResult
from core.detection.tracking import assign_tracks


# --- boxes -------------------------------------------------------------------------------------------------------

def test_iou_of_known_boxes():
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]]
    np.testing.assert_allclose(bx.iou(a, b), [[1.0, 50 / 150, 0.0, 0.25]])


def test_nms_keeps_best_of_overlapping_and_all_separate():
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]]
    scores = [0.5, 0.9, 0.7, 0.4]
    np.testing.assert_array_equal(bx.nms(boxes, scores, iou_threshold=0.4), [1, 2])
    np.testing.assert_array_equal(bx.nms(boxes, scores, iou_threshold=0.95), [1, 2, 0, 3])
    assert bx.nms(np.zeros((0, 4)), []).tolist() == []


def test_nms_refuses_mismatched_scores():
    with pytest.raises(ValueError, match="2 boxes need as many scores"):
        bx.nms([[0, 0, 1, 1], [0, 0, 2, 2]], [0.5])


def test_scale_expand_and_clip_boxes():
    np.testing.assert_allclose(bx.scale_boxes([[10, 20, 30, 40]], from_size=(100, 50), to_size=(400, 100)),
                               [[40, 40, 120, 80]])
    np.testing.assert_allclose(bx.expand([[10, 10, 20, 30]], margin=0.1, size=(100, 100)), [[9, 8, 21, 32]])
    np.testing.assert_allclose(bx.expand([[0, 0, 20, 20]], margin=0.5, size=(25, 25)), [[0, 0, 25, 25]])


# --- metrics -----------------------------------------------------------------------------------------------------

def test_average_precision_perfect_and_with_a_false_positive_first():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    perfect = metrics.ImageEval(gt.copy(), np.array([0.9, 0.8]), gt)
    assert metrics.average_precision([perfect])["ap"] == 1.0
    fp_first = metrics.ImageEval(np.vstack([[50, 50, 60, 60], gt]), np.array([0.95, 0.9, 0.8]), gt)
    # recall 0.5 at precision 1/2, recall 1 at precision 2/3 -> interpolated: 0.5*2/3 + 0.5*2/3
    assert metrics.average_precision([fp_first])["ap"] == pytest.approx(2 / 3, abs=1e-4)


def test_average_precision_subset_ignores_matches_outside_it():
    gt = np.array([[0, 0, 10, 10], [20, 20, 60, 60]], float)
    ev = metrics.ImageEval(gt.copy(), np.array([0.9, 0.8]), gt, gt_keep=np.array([False, True]))
    res = metrics.average_precision([ev])
    assert res["ap"] == 1.0 and res["signs"] == 1 and res["detections"] == 1


def test_end_to_end_needs_the_class():
    gt = np.array([[0, 0, 10, 10]], float)
    wrong = metrics.ImageEval(gt.copy(), np.array([0.9]), gt, pred_classes=np.array([3]), gt_classes=np.array([4]))
    right = metrics.ImageEval(gt.copy(), np.array([0.9]), gt, pred_classes=np.array([4]), gt_classes=np.array([4]))
    assert metrics.average_precision([wrong], with_class=True)["ap"] == 0.0
    assert metrics.average_precision([right], with_class=True)["ap"] == 1.0
    assert metrics.average_precision([wrong])["ap"] == 1.0  # class-agnostic: the box is right


# --- scenes ------------------------------------------------------------------------------------------------------

def test_scene_generator_is_deterministic():
    a, b = scenes.make_scene(11, size=(320, 240)), scenes.make_scene(11, size=(320, 240))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    c = scenes.make_scene(12, size=(320, 240))
    assert not np.array_equal(a.image, c.image)


def test_scene_boxes_lie_inside_and_have_categories():
    for seed in range(6):
        s = scenes.make_scene(seed, size=(320, 240), n_signs=(2, 3), sign_sizes=(16, 80))
        assert s.image.shape == (240, 320, 3) and s.image.dtype == np.uint8
        assert len(s.boxes) >= 1
        assert (s.boxes[:, :2] >= 0).all() and (s.boxes[:, 2] <= 320).all() and (s.boxes[:, 3] <= 240).all()
        assert all(scenes.CATEGORY_OF[int(c)] == cat for c, cat in zip(s.class_ids, s.categories))
        assert (metrics.box_size(s.boxes) <= 80 * 1.3).all()  # perspective may widen a sign a little


def test_train_and_test_scenes_share_no_background():
    assert not set(scenes.TRAIN_BACKGROUNDS) & set(scenes.TEST_BACKGROUNDS)
    assert set(scenes.CATEGORY_OF) == set(range(43))


@pytest.mark.parametrize("shape,area", [("circle", np.pi / 4), ("triangle", 0.47), ("inverted_triangle", 0.47),
                                        ("diamond", 0.5), ("octagon", 0.83)])
def test_shape_masks_cover_their_share_of_the_square(shape, area):
    assert scenes.shape_mask(shape, 64).mean() == pytest.approx(area, abs=0.03)


def test_video_signs_grow_as_the_camera_approaches():
    frames, truth = scenes.make_video(2, n_frames=5, size=(320, 180), n_signs=1)
    assert len(frames) == 5 and frames[0].shape == (180, 320, 3)
    sizes = [metrics.box_size(t.boxes)[0] for t in truth]
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0]


# --- the learned detector's pieces -------------------------------------------------------------------------------

def test_targets_decode_back_to_the_box():
    box = np.array([[40.0, 24.0, 72.0, 60.0]])
    t = make_targets([box], (32, 32))
    logit = torch.logit(t["heat"][0].clamp(1e-4, 1 - 1e-4))
    off = torch.logit(t["reg"][0, :2].clamp(1e-4, 1 - 1e-4))
    out = torch.cat([logit, off, t["reg"][0, 2:]])
    boxes, scores = decode(out, min_score=0.5)
    assert len(boxes) == 1 and scores[0] > 0.99
    np.testing.assert_allclose(boxes[0], box[0], atol=0.01)


def test_detector_checkpoint_round_trip_and_wrong_file(tmp_path):
    net = HeatmapNet((8, 8, 8, 8, 8, 8)).eval()
    save_detector(tmp_path / "d.pt", net, min_score=0.42, train={"command": "x"}, channels=(8, 8, 8, 8, 8, 8))
    det = load_detector_file(tmp_path / "d.pt")
    assert det.min_score == 0.42 and len(det.version) == 12
    image = np.zeros((100, 120, 3), np.uint8)
    with torch.no_grad():
        np.testing.assert_allclose(det.net(torch.zeros(1, 3, 32, 32)), net(torch.zeros(1, 3, 32, 32)))
    boxes, scores = det.propose(image)
    assert boxes.shape[1] == 4 and len(boxes) == len(scores)
    torch.save({"model": {}, "architecture": "published"}, tmp_path / "clf.pt")
    with pytest.raises(ValueError, match="not a detector checkpoint"):
        load_detector_file(tmp_path / "clf.pt")
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(ValueError, match="not a detector checkpoint"):
        load_detector_file(tmp_path / "junk.pt")
    assert STRIDE == 4


# --- the pipeline ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier():
    return pipeline.load_classifier("benchmark")


def _red_disc_photo(w: int = 400, h: int = 300, centre=(300, 80), r: int = 30) -> np.ndarray:
    image = np.full((h, w, 3), 128, np.uint8)
    cv2.circle(image, centre, r, (220, 20, 20), -1)
    return image


def _jpeg(image: np.ndarray, *, orientation: int | None = None) -> bytes:
    im = Image.fromarray(image)
    buf = io.BytesIO()
    if orientation:
        exif = im.getexif()
        exif[0x0112] = orientation
        im.save(buf, "JPEG", quality=95, exif=exif)
    else:
        im.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_boxes_are_in_upright_coordinates_under_exif_rotation(classifier):
    upright = _red_disc_photo()
    # Orientation 6: the viewer rotates the stored pixels 90 degrees clockwise; store them rotated the other way.
    stored = np.rot90(upright, k=1).copy()
    res = pipeline.detect_files([("phone.jpg", _jpeg(stored, orientation=6)), ("plain.jpg", _jpeg(upright))],
                                detector=ColourDetector(), classifier=classifier, min_score=0.0)
    for r in res:
        assert (r.width, r.height) == (400, 300), r
        assert len(r.detections) == 1
        np.testing.assert_allclose(r.detections[0].box, (270, 50, 331, 111), atol=3)


def test_a_large_photo_is_searched_downscaled_and_boxes_mapped_back(classifier, monkeypatch):
    monkeypatch.setattr(pipeline, "MAX_PROCESS_SIDE", 200)
    image = _red_disc_photo(800, 600, centre=(600, 160), r=60)
    res = pipeline.detect_files([("big.png", _png(image))], detector=ColourDetector(), classifier=classifier,
                                min_score=0.0)[0]
    assert res.error is None and (res.width, res.height) == (800, 600)
    assert any("searched at 200 px" in n for n in res.notes)
    np.testing.assert_allclose(res.detections[0].box, (540, 100, 661, 221), atol=6)
    assert max(res.detections[0].crop.shape[:2]) <= pipeline.MAX_CROP_SIDE


def _png(image: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).convert(mode or "RGB").save(buf, "PNG")
    return buf.getvalue()


def test_bad_and_odd_files_each_get_a_result(classifier, tmp_path):
    image = _red_disc_photo()
    items = [("notes.jpg", b"this is text, not a photo"), ("empty.png", b""),
             ("alpha.png", _png(image, "RGBA")), ("grey.png", _png(image, "L")),
             ("fake.mp4", b"hello, I am a text file"), ("ok.jpg", _jpeg(image))]
    res = pipeline.detect_files(items, detector=ColourDetector(), classifier=classifier, min_score=0.0)
    assert [r.file for r in res] == [n for n, _ in items]
    assert "not an image" in res[0].error and "empty" in res[1].error
    assert res[2].error is None and res[2].width == 400 and len(res[2].detections) == 1
    assert res[3].error is None and res[3].detections == []  # grey: no red, nothing proposed by colour
    assert res[4].error and "fake.mp4" in res[4].error and res[4].kind == "video"
    assert res[5].error is None and res[5].sha256


def test_json_schema_of_a_result(classifier):
    res = pipeline.detect_files([("ok.jpg", _jpeg(_red_disc_photo()))], detector=ColourDetector(),
                                classifier=classifier, min_score=0.0)[0]
    entry = json.loads(json.dumps(res.to_json()))
    assert set(entry) == {"file", "width", "height", "error", "detections"}
    d = entry["detections"][0]
    assert set(d) == {"box", "score", "class_id", "class_name", "confidence", "novel", "frame", "track"}
    assert len(d["box"]) == 4 and d["frame"] is None and d["track"] is None
    assert (d["class_id"] is None) == d["novel"]


def test_detection_label_says_unknown_for_novel():
    d = Detection((0, 0, 1, 1), 0.9, None, None, 0.2, True)
    assert d.label == "unknown sign" and d.to_json()["class_id"] is None
    assert FileResult("x").to_json()["detections"] == []


def test_unknown_detector_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="detector, colour"):
        pipeline.load_detector("yolo")


def test_learned_detector_levels_cover_large_signs():
    class Fixed(torch.nn.Module):  # fires one box of 80 px (level pixels) at the centre of every level
        def forward(self, x):
            h, w = x.shape[2] // STRIDE, x.shape[3] // STRIDE
            out = torch.full((1, 5, h, w), -20.0)
            out[0, 0, h // 2, w // 2] = 5.0
            out[0, 1:3, h // 2, w // 2] = 0.0
            out[0, 3:5, h // 2, w // 2] = float(np.log(80 / STRIDE))
            return out
    det = LearnedDetector(Fixed(), min_score=0.5)
    boxes, scores = det.propose(np.zeros((400, 640, 3), np.uint8))
    sizes = sorted(metrics.box_size(boxes).round())
    # full level: 80 px; half level: 160 px (80 >= its 40 px floor); quarter level: 320 px; none suppressed
    # each other (IoU of nested 80/160/320 boxes is 0.25 at most)
    assert sizes == [80, 160, 320]


def test_a_40_megapixel_photo_is_processed_downscaled(classifier):
    image = _red_disc_photo(8000, 5000, centre=(6000, 1000), r=300)  # 40,000,000 pixels
    res = pipeline.detect_files([("camera.jpg", _jpeg(image))], detector=ColourDetector(), classifier=classifier,
                                min_score=0.0)[0]
    assert res.error is None and (res.width, res.height) == (8000, 5000)
    assert any("searched at 2048 px" in n for n in res.notes)
    np.testing.assert_allclose(res.detections[0].box, (5700, 700, 6301, 1301), atol=12)


def test_the_file_hash_is_the_same_from_bytes_and_from_a_path(classifier, tmp_path):
    data = _jpeg(_red_disc_photo())
    (tmp_path / "a.jpg").write_bytes(data)
    res = pipeline.detect_files([("a.jpg", data), ("a.jpg", tmp_path / "a.jpg")], detector=ColourDetector(),
                                classifier=classifier)
    assert res[0].sha256 == res[1].sha256 == hashlib.sha256(data).hexdigest()


def test_default_tracker_follows_approaching_signs_sampled_at_2_per_second():
    frames, truth = scenes.make_video(4, n_frames=24, size=(640, 360), n_signs=2)  # a 2 s clip at 12 frames/s
    sampled = [[Detection(tuple(b), 0.9, int(c), "x", 0.9, False, frame=k) for b, c in zip(t.boxes, t.class_ids)]
               for k, t in enumerate(truth) if k % 6 == 0]  # 2 frames per second
    tracks = assign_tracks(sampled)
    assert len(tracks) == 2 and all(len(t.detections) == 4 for t in tracks)


def test_detector_train_command_writes_a_loadable_detector_with_its_command(tmp_path):
    out = tmp_path / "tiny.pt"
    res = run_cli("detector", "train", "--steps", "2", "--batch", "4", "--patch", "64", "--patches", "8",
                  "--channels", "4", "4", "4", "4", "4", "4", "--val-scenes", "2", "--out", out, root=tmp_path)
    assert res.returncode == 0, res.stderr
    metrics_out = json.loads(res.stdout)
    assert 0 <= metrics_out["min_score"] <= 1 and metrics_out["val_scenes"] == 2
    det = load_detector_file(out)
    assert det.meta["train"]["command"].startswith("python -m core detector train --steps 2 --batch 4 --patch 64")
    assert det.min_score == pytest.approx(metrics_out["min_score"], abs=1e-4)
    bad = run_cli("detector", "train", "--patch", "30", "--out", out, root=tmp_path)
    assert bad.returncode != 0 and "patch must be a multiple of 4" in bad.stderr


def test_scenes_fall_back_to_the_shipped_sample_without_the_shared_data(tmp_path):
    crops = scenes.sign_crops("test", source=str(tmp_path))
    assert len(crops) > 0 and crops.images.shape[1] == crops.images.shape[2] and crops.images.shape[3] == 3
    np.testing.assert_allclose(crops.roi[0], scenes.DEFAULT_ROI)
    s = scenes.make_scene(1, size=(200, 150), source=str(tmp_path))
    assert s.image.shape == (150, 200, 3)
