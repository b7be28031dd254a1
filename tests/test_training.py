import math

import numpy as np
import pytest
import torch

from core.data import datasets
from core.learning import models, registry, training, training_config
from core import runs
from core.learning.train_run import TrainRun
from core.base.progress import Cancelled
from tests.run_support import finished
from waits import wait_until

SAMPLE = "Sample48"


def _cfg(**kw):
    base = dict(epochs=1, batch_size=64, augment=False, seed=0)
    base.update(kw)
    return training.TrainConfig(**base)


def _parent43(seed=0):
    """A 43-class 'benchmark' checkpoint over GTSRB ids 0-42 (weights random but fixed)."""
    torch.manual_seed(seed)
    m = models.build_model("published", 43)
    return models.make_checkpoint(m, architecture="published", class_ids=list(range(43)),
                                  class_names=[f"c{i}" for i in range(43)], dataset="GTSRB",
                                  dataset_fingerprint="x", parent=None, mode="scratch", epochs=3, history=[],
                                  metrics={}, config={})


@pytest.fixture
def sample():
    return datasets.get_dataset(SAMPLE)


def test_scratch_one_epoch_records_history(sample):
    res = training.train(_cfg(augment=True), sample)
    (h,) = res.history
    assert {"epoch", "loss", "train_acc", "val_acc", "val_aug_acc", "seconds", "lr"} <= set(h)
    ck = res.checkpoint
    assert ck["class_ids"] == list(range(48)) and len(ck["class_names"]) == 48
    assert ck["dataset"] == SAMPLE and ck["mode"] == "scratch" and ck["epochs"] == 1
    assert ck["metrics"]["best_epoch"] == 1


def test_training_is_seeded(sample):
    a = training.train(_cfg(augment=True), sample)
    b = training.train(_cfg(augment=True), sample)
    assert a.history[0]["loss"] == b.history[0]["loss"]
    assert all(torch.equal(a.checkpoint["weights"][k], b.checkpoint["weights"][k]) for k in a.checkpoint["weights"])


def test_training_learns_on_the_sample(sample):
    res = training.train(_cfg(epochs=6, lr=3e-3), sample)
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert res.history[-1]["train_acc"] > 2 / 48  # clearly above chance


def test_incremental_phase1_trains_only_the_new_rows(sample):
    parent = _parent43()
    res = training.train(_cfg(mode="incremental", epochs=1, new_class_epochs=1), sample, parent=parent,
                         parent_name="p")
    w = res.checkpoint["weights"]
    assert res.checkpoint["class_ids"] == list(range(48))
    assert res.checkpoint["metrics"]["best_epoch"] == 1          # the phase-1 model is the last epoch
    # phase 1 sees only new-class images + replay (60 + 43 * 12 here): small batches give it enough steps
    n_phase1 = 5 * 12 + 43 * 12
    assert res.history[0]["steps"] >= min(training_config.PHASE1_MIN_STEPS, n_phase1 // 16)
    assert res.history[0]["steps"] > -(-n_phase1 // 64)               # more than batch_size=64 would give
    assert res.checkpoint["metrics"]["best_val_acc"] == res.history[-1]["val_acc"]
    assert torch.equal(w["classifier.weight"][:43], parent["weights"]["classifier.weight"])
    assert torch.equal(w["classifier.bias"][:43], parent["weights"]["classifier.bias"])
    assert not torch.equal(w["classifier.weight"][43:], torch.zeros_like(w["classifier.weight"][43:]))
    for k in parent["weights"]:
        if not k.startswith("classifier"):
            assert torch.equal(w[k], parent["weights"][k]), k
    assert res.history[0]["phase"] == "new_rows"
    assert res.checkpoint["parent"] == "p"


def test_incremental_then_finetune_changes_all_layers(sample):
    parent = _parent43()
    res = training.train(_cfg(mode="incremental", epochs=2, new_class_epochs=1, lwf_weight=1.0), sample,
                         parent=parent, parent_name="p")
    assert [h["phase"] for h in res.history] == ["new_rows", "all"]
    w = res.checkpoint["weights"]
    assert not torch.equal(w["features.1.weight"], parent["weights"]["features.1.weight"])


def test_transfer_freeze_keeps_features(sample):
    parent = _parent43()
    res = training.train(_cfg(mode="transfer_freeze"), sample, parent=parent, parent_name="p")
    w = res.checkpoint["weights"]
    for k in parent["weights"]:
        if k.startswith("features"):
            assert torch.equal(w[k], parent["weights"][k]), k
    assert not torch.equal(w["head.1.weight"], parent["weights"]["head.1.weight"])
    assert res.checkpoint["class_ids"] == list(range(48))  # new classifier for the dataset's classes


def test_resume_refuses_classes_the_model_does_not_know(sample):
    with pytest.raises(ValueError, match="incremental"):
        training.train(_cfg(mode="resume"), sample, parent=_parent43(), parent_name="p")


def test_resume_on_a_dataset_without_some_classes_warns_and_keeps_them(sample):
    parent = _resized_parent(50)                     # the model knows 48 and 49; Sample48 has no images of them
    messages = []
    res = training.train(_cfg(mode="resume"), sample, parent=parent, parent_name="p",
                         progress=lambda f, m, e=None: messages.append(m))
    assert res.checkpoint["class_ids"] == list(range(50))
    assert res.checkpoint["metrics"]["classes_without_train_images"] == [48, 49]
    assert any("no train images for classes [48, 49]" in m for m in messages)
    full = training.train(_cfg(mode="resume"), sample, parent=_resized_parent(48), parent_name="p")
    assert "classes_without_train_images" not in full.checkpoint["metrics"]


def _resized_parent(k):
    parent = _parent43()
    parent["class_ids"] = list(range(k))
    parent["class_names"] = [str(i) for i in range(k)]
    parent["weights"] = models.build_model("published", k).state_dict()
    return parent


def test_incremental_without_new_classes_is_refused(sample):
    parent = _parent43()
    parent["class_ids"] = list(range(48))
    parent["class_names"] = [str(i) for i in range(48)]
    parent["weights"] = models.build_model("published", 48).state_dict()
    with pytest.raises(ValueError, match="no classes beyond"):
        training.train(_cfg(mode="incremental"), sample, parent=parent, parent_name="p")


@pytest.mark.parametrize("kw, msg", [({"mode": "bogus"}, "valid modes"), ({"epochs": 0}, "epochs"),
                                     ({"lr": 2.0}, "learning rate"), ({"new_class_lr": 0.0}, "new_class_lr"),
                                     ({"distill_weight": -1.0}, "not be negative"),
                                     ({"distill_temperature": 0.0}, "positive"),
                                     ({"teachers": ("a",), "lwf_weight": 1.0}, "not both"),
                                     ({"outlier_weight": -0.5}, "outlier_weight"),
                                     ({"outlier_share": 0.0}, "outlier_share"),
                                     ({"outlier_loss": "hinge"}, "outlier_loss"),
                                     ({"harden_p": 1.5, "augment": True}, "harden_p is a probability"),
                                     ({"harden_p": 0.2, "augment": False}, "turn augmentation on"),
                                     ({"harden_at": "middle"}, "harden_at must be one of"),
                                     ({"loader_workers": -1}, "loader_workers")])
def test_bad_configs_are_refused(sample, kw, msg):
    with pytest.raises(ValueError, match=msg):
        training.train(_cfg(**kw), sample)


def test_cancel_mid_epoch_raises_and_writes_nothing(sample):
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        training.train(_cfg(epochs=3), sample, should_stop=stop)


def test_empty_train_split_is_refused(tmp_path):
    from core.data.built import SplitToWrite, write_dataset
    empty = SplitToWrite([], np.zeros(0, np.int64), [], [], [], np.zeros((0, 2), np.int32))
    write_dataset("Empty", {"train": empty}, classes={0: "a"}, source="t", recipe="t")
    with pytest.raises(ValueError, match="empty train split"):
        training.train(_cfg(), datasets.get_dataset("Empty"))


def test_training_job_registers_the_model_and_history():
    job_id = runs.start("train", TrainRun(_cfg(), dataset=SAMPLE, name="tiny"))
    job = finished(job_id)
    assert job["status"] == "done", job.get("error")
    assert len(job["history"]) == 1 and job["progress"] == 1.0
    points = runs.curve_points(job_id)  # a one-epoch run still draws a curve: ~10 points an epoch
    assert len(points) >= 2 and points[-1]["epoch"] == 1.0 and all(0 <= p["train_acc"] <= 1 for p in points)
    m = registry.get_model("tiny")
    assert m.num_classes == 48 and m.path.is_file() and m.dataset == SAMPLE
    with pytest.raises(ValueError, match="exists already"):
        runs.start("train", TrainRun(_cfg(), dataset=SAMPLE, name="tiny"))


def test_cancelled_training_job_registers_nothing():
    job_id = runs.start("train", TrainRun(_cfg(epochs=50), dataset=SAMPLE, name="never"))
    wait_until(lambda: runs.get(job_id)["status"] != "queued", what="the training leaving the queue")
    runs.cancel(job_id)  # a running training
    job = finished(job_id)
    assert job["status"] == "cancelled"
    assert "never" not in [m.name for m in registry.list_models()]


def _teacher48(seed=1):
    torch.manual_seed(seed)
    m = models.build_model("published", 48)
    return models.make_checkpoint(m, architecture="published", class_ids=list(range(48)),
                                  class_names=[str(i) for i in range(48)], dataset=SAMPLE, dataset_fingerprint="x",
                                  parent=None, mode="scratch", epochs=1, history=[], metrics={}, config={})


def _agreement(ckpt, teacher, images):
    from core.learning.inference import predict_proba
    a = predict_proba(models.model_from_checkpoint(ckpt), images).argmax(1)
    b = predict_proba(models.model_from_checkpoint(teacher), images).argmax(1)
    return float((a == b).mean())


def test_distillation_pulls_the_model_towards_its_teachers(sample):
    # The teacher is an untrained net: its (arbitrary) decisions can only be learned through the distillation term.
    teacher = _teacher48()
    x = datasets.load_split(sample, "train").images
    plain = training.train(_cfg(epochs=3, lr=3e-3), sample)
    distilled = training.train(_cfg(epochs=3, lr=3e-3, teachers=("t",), distill_weight=20.0,
                                    distill_temperature=1.0), sample, teachers=[teacher])
    assert distilled.checkpoint["config"]["teachers"] == ("t",)
    assert _agreement(distilled.checkpoint, teacher, x) > _agreement(plain.checkpoint, teacher, x) + 0.2


def _outlier_confidence(ckpt, images):
    """Mean maximum softmax probability of the model on synthetic outliers made from ``images``."""
    from core.learning import outliers
    from core.data.images import normalise, resize_batch
    x = normalise(resize_batch(images))
    o = outliers.synthesize(x, torch.arange(len(x)), n=len(x), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        return float(torch.softmax(models.model_from_checkpoint(ckpt).eval()(o), 1).max(1).values.mean())


def test_outlier_exposure_makes_the_model_unsure_on_outliers(sample):
    val = datasets.load_split(sample, "val").images
    plain = training.train(_cfg(epochs=10, lr=3e-3), sample)
    exposed = training.train(_cfg(epochs=10, lr=3e-3, outlier_weight=2.0), sample)
    assert exposed.checkpoint["config"]["outlier_weight"] == 2.0
    # near 1/48 on outliers with exposure; a plain model grows confident on them as it learns the classes
    assert _outlier_confidence(exposed.checkpoint, val) < 0.6 * _outlier_confidence(plain.checkpoint, val)
    assert exposed.history[-1]["train_acc"] > 2 / 48  # still learns the classes


def test_energy_outlier_term_is_zero_past_both_margins_and_pushes_each_side_the_right_way():
    from core.learning.epoch import ENERGY_MARGINS, OutlierExposure
    high, low = ENERGY_MARGINS
    oe = OutlierExposure(0.5, 0.5, torch.Generator().manual_seed(0), "energy")
    k = 43
    # logsumexp of k equal logits c is c + log k: put outliers below `low` and known images above `high`
    quiet = torch.full((4, k), low - math.log(k) - 1.0)
    loud = torch.full((4, k), high - math.log(k) + 1.0)
    assert float(oe.loss(quiet, loud)) == 0.0
    # an outlier scored like a known image, and a known image scored like an outlier, both cost
    out = loud.clone().requires_grad_(True)
    known = quiet.clone().requires_grad_(True)
    loss = oe.loss(out, known)
    loss.backward()
    assert float(loss.detach()) > 0
    assert float(out.grad.sum()) > 0 and float(known.grad.sum()) < 0  # descent lowers outliers', raises knowns' scores
    # the uniform term ignores the known images and is 0 on uniform predictions
    uniform = OutlierExposure(0.5, 0.5, torch.Generator().manual_seed(0))
    assert abs(float(uniform.loss(quiet, loud))) < 1e-6 and float(uniform.loss(torch.eye(k)[:4] * 9)) > 0
    assert float(oe.loss(torch.zeros(0, k), loud)) == 0.0  # no outliers in a batch: no term


def test_energy_outlier_exposure_lowers_the_energy_of_outliers(sample):
    val = datasets.load_split(sample, "val").images
    plain = training.train(_cfg(epochs=6, lr=3e-3), sample)
    exposed = training.train(_cfg(epochs=6, lr=3e-3, outlier_weight=1.0, outlier_loss="energy"), sample)
    assert exposed.checkpoint["config"]["outlier_loss"] == "energy"
    assert _outlier_energy(exposed.checkpoint, val) < _outlier_energy(plain.checkpoint, val) - 0.5


def _outlier_energy(ckpt, images):
    from core.learning import outliers
    from core.data.images import normalise, resize_batch
    x = normalise(resize_batch(images))
    o = outliers.synthesize(x, torch.arange(len(x)), n=len(x), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        return float(torch.logsumexp(models.model_from_checkpoint(ckpt).eval()(o), 1).mean())


def test_outlier_exposure_leaves_incremental_phase1_alone(sample):
    parent = _parent43()
    cfg = _cfg(mode="incremental", epochs=1, new_class_epochs=1)
    plain = training.train(cfg, sample, parent=parent, parent_name="p")
    exposed = training.train(_cfg(mode="incremental", epochs=1, new_class_epochs=1, outlier_weight=1.0), sample,
                             parent=parent, parent_name="p")
    for k, v in plain.checkpoint["weights"].items():
        assert torch.equal(v, exposed.checkpoint["weights"][k]), k


def test_teachers_must_share_the_model_classes(sample):
    bad = _parent43()
    bad["class_ids"] = list(range(5, 48))
    with pytest.raises(ValueError, match="share the model's class ids"):
        training.train(_cfg(teachers=("bad",)), sample, teachers=[bad])
    with pytest.raises(ValueError, match="checkpoints were given"):
        training.train(_cfg(teachers=("a", "b")), sample, teachers=[_teacher48()])


def test_training_job_distils_from_registered_teachers():
    registry.register("teacher-a", _teacher48())
    job_id = runs.start("train", TrainRun(_cfg(teachers=("teacher-a",)), dataset=SAMPLE, name="student"))
    job = finished(job_id)
    assert job["status"] == "done", job.get("error")
    assert list(models.load_checkpoint(registry.get_model("student").path)["config"]["teachers"]) == ["teacher-a"]
    with pytest.raises(ValueError, match="no model named|unknown model|not found"):
        runs.start("train", TrainRun(_cfg(teachers=("nobody",)), dataset=SAMPLE, name="student2"))


def test_a_teacher_with_weight_zero_changes_nothing(sample):
    # Building the teachers must not consume the student's random stream (init, dropout, batch order).
    plain = training.train(_cfg(augment=True), sample)
    zero = training.train(_cfg(augment=True, teachers=("t",), distill_weight=0.0), sample, teachers=[_teacher48()])
    assert all(torch.equal(plain.checkpoint["weights"][k], zero.checkpoint["weights"][k]) for k in plain.checkpoint["weights"])


def test_teachers_of_different_class_counts_are_refused(sample):
    t43 = _parent43()
    with pytest.raises(ValueError, match="disagree on the number of classes"):
        training.train(_cfg(teachers=("a", "b")), sample, teachers=[t43, _teacher48()])


def test_phases_are_planned_once_per_mode():
    (p,) = training.plan_phases(_cfg(mode="scratch", epochs=3))
    assert (p.name, p.epochs, p.train_features, p.train_head, p.new_rows_only, p.competes_for_best) == \
           ("all", 3, True, True, False, True)
    (p,) = training.plan_phases(_cfg(mode="transfer_freeze", epochs=2))
    assert (p.name, p.train_features, p.train_head) == ("head", False, True)
    p1, p2 = training.plan_phases(_cfg(mode="incremental", epochs=4, new_class_epochs=1, batch_size=128,
                                       new_class_lr=1e-2, finetune_lr=1e-3), phase1_images=800)
    assert (p1.name, p1.epochs, p1.lr, p1.weight_decay, p1.new_rows_only, p1.distil, p1.competes_for_best) == \
           ("new_rows", 1, 1e-2, 0.0, True, False, False)
    assert p1.batch_size == 800 // training_config.PHASE1_MIN_STEPS and not p1.train_features and not p1.train_head
    assert (p2.name, p2.epochs, p2.lr, p2.batch_size, p2.distil, p2.competes_for_best) == ("all", 3, 1e-3, 128, True, True)
    # one epoch in all: only phase 1 runs
    assert [p.name for p in training.plan_phases(_cfg(mode="incremental", epochs=1), phase1_images=100)] == ["new_rows"]


def test_the_saved_config_names_the_architecture_actually_trained(sample):
    torch.manual_seed(0)
    m = models.build_model("bn_stn", 48)
    parent = models.make_checkpoint(m, architecture="bn_stn", class_ids=list(range(48)),
                                    class_names=[f"c{i}" for i in range(48)], dataset=SAMPLE, dataset_fingerprint="x",
                                    parent=None, mode="scratch", epochs=1, history=[], metrics={}, config={})
    res = training.train(_cfg(mode="resume", max_train_images=64), sample, parent=parent, parent_name="p")
    assert res.checkpoint["architecture"] == "bn_stn" and res.checkpoint["config"]["architecture"] == "bn_stn"
    assert res.checkpoint["dataset_fingerprint"] == sample.fingerprint


def test_train_config_round_trips_through_json_and_refuses_unknown_settings():
    cfg = _cfg(teachers=("a", "b"), max_train_images=10)
    from dataclasses import asdict
    assert training.TrainConfig.from_json(asdict(cfg)) == cfg
    with pytest.raises(ValueError, match="unknown training settings"):
        training.TrainConfig.from_json({"epochs": 1, "learning_rate": 0.1})


def test_live_frames_put_batch_points_beside_the_epoch_history():
    from core.analysis.curves import live_frames
    history = [{"epoch": 1, "phase": "all", "loss": 0.5, "train_acc": 0.8, "val_acc": 0.7}]
    points = [{"epoch": 0.5, "loss": 0.9, "train_acc": 0.6}, {"epoch": 1.0, "loss": 0.6, "train_acc": 0.75}]
    loss, acc = live_frames(history, points)
    assert list(loss["curve"]) == ["batches", "batches", "epoch"] and list(loss["epoch"]) == [0.5, 1.0, 1]
    assert set(acc["curve"]) == {"train (batches)", "train", "val"}
    loss, acc = live_frames(history, [])
    assert list(loss["curve"]) == ["epoch"]


@pytest.fixture
def one_thread():
    """Bit-identity holds per thread count; one thread is the documented promise."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Crash(Exception):
    pass


def _train_interrupted_then_resumed(cfg, info, *, stop_after: int, parent=None):
    """Train, 'crash' after epoch ``stop_after`` (the state saved then, as a run would), resume from it."""
    import io
    saved = {}

    def keep(state):
        buf = io.BytesIO()
        torch.save(state, buf)  # through bytes and a weights_only load, as from the run folder
        saved["state"] = buf.getvalue()
        if state["epochs_done"] == stop_after:
            raise _Crash()

    with pytest.raises(_Crash):
        training.train(cfg, info, parent=parent, parent_name="p" if parent else None, on_epoch=keep)
    state = torch.load(io.BytesIO(saved["state"]), weights_only=True)
    return training.train(cfg, info, parent=parent, parent_name="p" if parent else None, resume=state)


@pytest.mark.parametrize("mode,stop_after,extra", [("scratch", 1, {}), ("incremental", 1, {}), ("incremental", 2, {}),
                                                   ("scratch", 2, {"outlier_weight": 1.0}),
                                                   ("scratch", 1, {"loader_workers": 2}),
                                                   ("scratch", 1, {"augment_engine": "albumentations"})])
def test_a_resumed_training_ends_bit_identical_to_an_uninterrupted_one(sample, mode, stop_after, extra, one_thread):
    parent = _parent43() if mode == "incremental" else None
    cfg = _cfg(mode=mode, epochs=3, augment=True, new_class_epochs=1, max_train_images=300, **extra)
    whole = training.train(cfg, sample, parent=parent, parent_name="p" if parent else None)
    resumed = _train_interrupted_then_resumed(cfg, sample, stop_after=stop_after, parent=parent)
    for k, v in whole.checkpoint["weights"].items():
        assert torch.equal(v, resumed.checkpoint["weights"][k]), k
    strip = lambda h: [{k: v for k, v in e.items() if "seconds" not in k} for e in h]  # noqa: E731
    assert strip(whole.history) == strip(resumed.history)


def test_a_resume_state_of_other_settings_or_data_is_refused(sample):
    import io
    states = []
    training.train(_cfg(epochs=1), sample, on_epoch=lambda s: states.append(s))
    (state,) = states
    assert set(training_config.RESUME_KEYS) <= set(state)
    with pytest.raises(ValueError, match="other settings"):
        training.train(_cfg(epochs=2, lr=0.01), sample, resume=state)
    with pytest.raises(ValueError, match="changed since this training started"):
        training.train(_cfg(epochs=1), sample, resume=dict(state, dataset_fingerprint="old"))
    with pytest.raises(ValueError, match="on 2 process"):
        training.train(_cfg(epochs=1), sample, resume=dict(state, world=2))
    with pytest.raises(ValueError, match="not a resumable training state"):
        training.train(_cfg(epochs=1), sample, resume={"weights": 1})


def test_precision_auto_follows_the_hardware(monkeypatch):
    from core.learning import distributed
    cpu = torch.device("cpu")
    assert distributed.resolve_precision("fp32", cpu) == "fp32"
    assert distributed.resolve_precision("bf16", cpu) == "bf16"
    for native in (False, True):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda n=native: n)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda n=native: n)
        assert distributed.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    with pytest.raises(ValueError, match="precision"):
        distributed.resolve_precision("fp8", cpu)
    with pytest.raises(ValueError, match="resolved arithmetic"):
        distributed.arithmetic_record("auto", cpu)
    with pytest.raises(ValueError, match="precision"):
        _cfg(precision="half").validate()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_both_arithmetics_train_and_are_recorded(sample, precision):
    res = training.train(_cfg(epochs=2, precision=precision, max_train_images=300), sample)
    assert res.checkpoint["metrics"]["precision"] == precision
    arithmetic = res.checkpoint["metrics"]["arithmetic"]
    assert arithmetic["precision"] == precision and arithmetic["torch"] == str(torch.__version__)
    assert arithmetic["device"] == "cpu" and arithmetic["cpu_capability"]
    assert isinstance(arithmetic["amx"], bool) and isinstance(arithmetic["avx512_bf16"], bool)
    assert arithmetic["fused_bn_pool"] is (precision == "fp32")
    assert arithmetic["narrow_conv_grad"] is (precision == "fp32")
    assert res.history[-1]["loss"] < res.history[0]["loss"] * 1.5 and np.isfinite(res.history[-1]["loss"])
    assert 0 < res.history[0]["train_pass_seconds"] <= res.history[0]["seconds"]


def test_a_resumed_run_keeps_the_arithmetic_it_started_with(sample):
    """A state saved in fp32 (or before bf16 existed: no key) resumes in fp32 even where auto would pick bf16."""
    import io
    states = []
    cfg = _cfg(epochs=2, precision="auto", max_train_images=200)

    def crash_after_first(state):
        states.append(state)
        raise _Crash()

    with pytest.raises(_Crash):
        training.train(cfg, sample, on_epoch=crash_after_first)
    state = dict(states[0])
    state.pop("precision")  # as saved before the setting existed: neither the key nor the config field
    state["config"] = {k: v for k, v in state["config"].items() if k != "precision"}
    buf = io.BytesIO()
    torch.save(state, buf)
    resumed = training.train(cfg, sample, resume=torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    assert resumed.checkpoint["metrics"]["precision"] == "fp32"


def _through_bytes(state: dict) -> dict:
    import io
    buf = io.BytesIO()
    torch.save(state, buf)  # as from the run folder (and no tensor shared with an earlier resume)
    return torch.load(io.BytesIO(buf.getvalue()), weights_only=True)


def _state_after_first_epoch(cfg, sample) -> dict:
    """The resumable state a training of ``cfg`` hands over after its first epoch (it is then stopped)."""
    states = []

    def crash_after_first(state):
        states.append(_through_bytes(state))
        raise _Crash()

    with pytest.raises(_Crash):
        training.train(cfg, sample, on_epoch=crash_after_first)
    return states[0]


def test_a_resume_state_of_another_augmentation_group_set_is_refused_and_of_this_one_resumes(sample, monkeypatch):
    import dataclasses
    from core.data import augment
    cfg = _cfg(epochs=2, augment=True, max_train_images=100)
    state = _state_after_first_epoch(cfg, sample)
    assert state["augment_version"] == augment.groups_version()
    noise = augment.get_group("noise")
    monkeypatch.setitem(augment.REGISTRY.table, "noise", dataclasses.replace(noise, version=noise.version + 1))
    with pytest.raises(ValueError, match="augmentation groups changed since this training started"):
        training.train(cfg, sample, resume=_through_bytes(state))
    monkeypatch.setitem(augment.REGISTRY.table, "noise", noise)
    assert training.train(cfg, sample, resume=_through_bytes(state)).history[-1]["epoch"] == 2
    old = {k: v for k, v in state.items() if k != "augment_version"}  # saved before states recorded the set
    assert training.train(cfg, sample, resume=_through_bytes(old)).history[-1]["epoch"] == 2


def test_hardening_at_the_input_size_is_recorded_and_a_state_resumes_only_where_it_hardened(sample):
    import dataclasses
    from core.data import augment
    cfg = _cfg(epochs=2, augment=True, max_train_images=100, harden_p=0.5, harden_at="input")
    states = [_state_after_first_epoch(cfg, sample)]
    resumed = training.train(cfg, sample, resume=_through_bytes(states[0]))
    assert resumed.checkpoint["config"]["harden_at"] == "input"
    assert resumed.checkpoint["config"]["augment_version"] == augment.pipeline_version(0.5, "input")
    with pytest.raises(ValueError, match="other settings"):
        training.train(dataclasses.replace(cfg, harden_at="source"), sample, resume=_through_bytes(states[0]))


def test_a_hardened_training_records_its_groups_and_resumes_to_the_same_weights(sample, monkeypatch):
    import dataclasses
    from core.data import augment
    cfg = _cfg(epochs=2, augment=True, max_train_images=100, harden_p=0.5)
    whole = training.train(cfg, sample)
    assert whole.checkpoint["config"]["harden_p"] == 0.5
    assert whole.checkpoint["config"]["augment_version"] == augment.pipeline_version(0.5) != augment.groups_version()
    states = [_state_after_first_epoch(cfg, sample)]
    resumed = training.train(cfg, sample, resume=_through_bytes(states[0]))
    for k, v in whole.checkpoint["weights"].items():
        assert torch.equal(v, resumed.checkpoint["weights"][k]), k
    erasing = augment.HARDENING.table["erasing"]
    monkeypatch.setitem(augment.HARDENING.table, "erasing", dataclasses.replace(erasing, version=2))
    with pytest.raises(ValueError, match="augmentation groups changed since this training started"):
        training.train(cfg, sample, resume=_through_bytes(states[0]))


def test_the_augmentation_engine_is_batch_where_it_applies_and_is_recorded(sample):
    engine = training_config.augment_engine
    assert engine(_cfg(augment=True)) == "batch" and engine(_cfg(augment=False)) is None
    assert engine(_cfg(augment=True, harden_p=0.1)) == "albumentations"
    assert engine(_cfg(augment=True, loader_workers=2)) == "albumentations"
    assert engine(_cfg(augment=True, augment_engine="albumentations")) == "albumentations"
    assert engine(_cfg(augment=True), "cuda") == "albumentations"  # measured on the CPU only
    assert engine(_cfg(augment=True, augment_engine="batch"), "cuda") == "batch"
    with pytest.raises(ValueError, match="no hardening groups"):
        _cfg(augment_engine="batch", harden_p=0.1).validate()
    with pytest.raises(ValueError, match="augment_engine"):
        _cfg(augment_engine="gpu").validate()
    # a config saved before the choice existed augmented with albumentations, and resumes that way
    from dataclasses import asdict
    old = {k: v for k, v in asdict(_cfg(augment=True)).items() if k != "augment_engine"}
    assert training.TrainConfig.from_json(old).augment_engine == "albumentations"
    for choice, expected in (("auto", "batch"), ("albumentations", "albumentations")):
        res = training.train(_cfg(augment=True, augment_engine=choice, max_train_images=200), sample)
        assert res.checkpoint["metrics"]["augment_engine"] == expected
        assert res.checkpoint["config"]["augment_engine"] == choice
    plain = training.train(_cfg(augment=False, max_train_images=200), sample)
    assert plain.checkpoint["metrics"]["augment_engine"] is None


def test_the_batch_feeder_augments_whole_batches_in_the_consuming_thread(sample):
    import threading
    from core.data.batch_augment import BatchAugmenter
    from core.learning.epoch import BatchFeeder
    split = datasets.load_split(sample, "train")
    seen = []

    class Recording(BatchAugmenter):
        def __call__(self, images):
            seen.append((threading.current_thread() is threading.main_thread(), images.shape))
            return super().__call__(images)

    feeder = BatchFeeder(split.images[:100], split.labels[:100], batch_size=32, rng=np.random.default_rng(0),
                         augmenter=Recording(p=1.0, seed=0))
    batches = list(feeder)
    assert [len(y) for _, y in batches] == [32, 32, 32, 4]
    assert all(x.shape[1:] == (3, 48, 48) and x.is_contiguous(memory_format=torch.channels_last) for x, _ in batches)
    assert seen == [(True, (n, 32, 32, 3)) for n in (32, 32, 32, 4)]  # augmented at the source size, then resized
    with pytest.raises(ValueError, match="not several"):
        BatchFeeder(split.images[:10], split.labels[:10], batch_size=4, rng=np.random.default_rng(0),
                    pipeline=object(), augmenter=Recording())


def test_a_state_resumes_only_on_the_engine_it_augmented_with(sample):
    states = []

    def crash_after_first(state):
        states.append(state)
        raise _Crash()

    cfg = _cfg(epochs=2, augment=True, max_train_images=200)
    with pytest.raises(_Crash):
        training.train(cfg, sample, on_epoch=crash_after_first)
    (state,) = states
    assert state["augment_engine"] == "batch" and state["rng"]["augment_batch"] is not None
    old = {k: v for k, v in state.items() if k != "augment_engine"}  # as a state from before the batch engine
    with pytest.raises(ValueError, match="augmenting with the albumentations engine"):
        training.train(cfg, sample, resume=old)
    assert training.train(cfg, sample, resume=state).history[-1]["epoch"] == 2
