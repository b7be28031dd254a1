from pathlib import Path

import pytest
import torch
from torch import nn

from core.learning import models


def test_published_architecture_matches_the_paper():
    m = models.build_model("published", 43)
    convs = [l for l in m.features if isinstance(l, nn.Conv2d)]
    assert [(c.kernel_size, c.out_channels) for c in convs] == [((1, 1), 1), ((5, 5), 29), ((3, 3), 59), ((3, 3), 74)]
    pools = [l for l in m.features if isinstance(l, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 3 and p.stride == 2 and p.ceil_mode for p in pools)
    assert m.features(torch.zeros(2, 3, 48, 48)).shape == (2, 1184)
    fcs = [l for l in m.head if isinstance(l, nn.Linear)]
    assert [(f.in_features, f.out_features) for f in fcs] == [(1184, 300), (300, 300)]
    assert (m.classifier.in_features, m.classifier.out_features) == (300, 43)
    assert m(torch.zeros(3, 3, 48, 48)).shape == (3, 43)


@pytest.mark.parametrize("shape", [(4, 29, 44, 44), (4, 59, 21, 21), (3, 74, 7, 7)])
def test_pool_then_relu_is_the_published_relu_then_pool(shape):
    """The blocks pool before the ReLU (faster); outputs and input gradients equal the published order's."""
    torch.manual_seed(0)
    x = torch.randn(shape)
    pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = torch.relu(pool(a)), pool(torch.relu(b))
    assert torch.equal(ya, yb)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("arch", ["published", "published_lcn"])
def test_training_runs_the_published_stem_as_one_conv_with_the_same_values_and_gradients(arch):
    """While training, the published 1x1 and 5x5 convolutions run as one 5x5 conv with their product weights
    (faster backward); the features, and the gradients of all four parameters, are those of the two layers."""
    torch.manual_seed(0)
    model = models.build_model(arch, 5).train()
    x = torch.randn(6, 3, 48, 48).contiguous(memory_format=torch.channels_last)
    target = torch.randn(6, models.FEATURES)
    grey, first = model.features[0], model.features[1]
    params = [grey.weight, grey.bias, first.weight, first.bias]
    got = model._features(model.lcn(x))
    g_got = torch.autograd.grad(((got - target) ** 2).sum(), params)
    want = model.features(model.lcn(x))  # the layers one after another
    g_want = torch.autograd.grad(((want - target) ** 2).sum(), params)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    for a, b in zip(g_got, g_want):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-3)
    calls = []
    first.register_forward_hook(lambda *a: calls.append(1))
    model.eval()(x)
    assert calls, "evaluation runs the two layers as they are"
    model.train()(x)
    assert len(calls) == 1, "training runs them as one convolution"


def test_bn_stn_is_selectable_and_keeps_the_interface():
    m = models.build_model("bn_stn", 48)
    assert any(isinstance(l, nn.BatchNorm2d) for l in m.features)
    assert m.eval()(torch.randn(2, 3, 48, 48)).shape == (2, 48)
    assert m.embed(torch.randn(2, 3, 48, 48)).shape == (2, 300)


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(ValueError, match="published"):
        models.build_model("resnet", 10)


def test_expand_classifier_keeps_old_rows_exactly():
    torch.manual_seed(0)
    m = models.build_model("published", 43).eval()
    x = torch.randn(4, 3, 48, 48)
    before = m(x).detach()
    w, b = m.classifier.weight.detach().clone(), m.classifier.bias.detach().clone()
    models.expand_classifier(m, 5)
    assert m.num_classes == 48
    assert torch.equal(m.classifier.weight[:43], w) and torch.equal(m.classifier.bias[:43], b)
    assert torch.equal(m(x)[:, :43], before)


def _ckpt(model, n):
    return models.make_checkpoint(model, architecture="published", class_ids=list(range(n)),
                                  class_names=[f"c{i}" for i in range(n)], dataset="d", dataset_fingerprint="f",
                                  parent=None, mode="scratch", epochs=1, history=[], metrics={}, config={})


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    m = models.build_model("published", 7).eval()
    path = models.save_checkpoint(_ckpt(m, 7), tmp_path / "m.pt")
    ck = models.load_checkpoint(path)
    assert set(models.CHECKPOINT_KEYS) <= set(ck)
    m2 = models.model_from_checkpoint(ck)
    x = torch.randn(2, 3, 48, 48)
    assert torch.equal(m(x), m2(x))
    assert not list(tmp_path.glob("*.tmp"))


def test_wrong_class_count_gives_a_clear_error(tmp_path):
    m = models.build_model("published", 7)
    ck = _ckpt(m, 7)
    ck["class_ids"] = list(range(9))
    with pytest.raises(ValueError, match="do not fit"):
        models.model_from_checkpoint(ck)


def test_wrong_architecture_gives_a_clear_error():
    ck = _ckpt(models.build_model("published", 7), 7)
    ck["architecture"] = "bn_stn"
    with pytest.raises(ValueError, match="do not fit"):
        models.model_from_checkpoint(ck)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04garbage"])
def test_corrupt_checkpoint_files_are_refused(tmp_path, content):
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    with pytest.raises(ValueError, match="bad.pt"):
        models.load_checkpoint(p)


def test_foreign_checkpoint_without_our_keys_is_refused(tmp_path):
    p = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, p)
    with pytest.raises(ValueError, match="not a workbench checkpoint"):
        models.load_checkpoint(p)


def test_pickled_objects_are_not_loaded(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"weights": {}, "architecture": object}, p)
    with pytest.raises(ValueError):
        models.load_checkpoint(p)


def test_committee_averages_member_probabilities():
    torch.manual_seed(0)
    a, b = models.build_model("published", 5).eval(), models.build_model("bn", 5).eval()
    x = torch.randn(4, 3, 48, 48)
    c = models.Committee([a, b]).eval()
    with torch.no_grad():
        expected = (torch.softmax(a(x), 1) + torch.softmax(b(x), 1)) / 2
        assert torch.allclose(torch.softmax(c(x), 1), expected, atol=1e-6)
    with pytest.raises(ValueError, match="disagree"):
        models.Committee([a, models.build_model("published", 6)])


def test_shipped_robust48_is_the_model_cards_model():
    """artifacts/robust48.pt holds what the model card's command makes: incremental48's 48 classes, bn_stn from
    scratch for 75 epochs at augmentation p 0.3 distilled from incremental48, the epoch best on val kept; and it
    classifies the embedded sample's test images."""
    import numpy as np

    from core.base import config
    from core.data.datasets import get_dataset, load_split
    from core.learning.inference import predict_proba
    ck = models.load_checkpoint(config.ARTIFACTS_DIR / "robust48.pt")
    inc = models.load_checkpoint(config.ARTIFACTS_DIR / "incremental48.pt")
    assert ck["class_ids"] == inc["class_ids"] and ck["class_names"] == inc["class_names"]
    cfg = ck["config"]
    settings = (ck["architecture"], cfg["mode"], cfg["epochs"], cfg["augment_p"], cfg["seed"])
    assert settings == ("bn_stn", "scratch", 75, 0.3, 0)
    assert [Path(t).name for t in cfg["teachers"]] == ["incremental48.pt"]  # trained from a copy outside the repo
    best = max(h["val_acc"] for h in ck["history"])
    kept = next(h for h in ck["history"] if h["epoch"] == ck["metrics"]["best_epoch"])
    assert kept["val_acc"] == best > 0.995  # epochs tied at the best: the later one is kept
    assert abs(ck["metrics"]["test_acc"] - 0.9899) < 5e-4 and ck["metrics"]["test_n"] == 12630
    split = load_split(get_dataset("Sample48"), "test")
    lookup = {c: i for i, c in enumerate(ck["class_ids"])}
    y = np.array([lookup[int(c)] for c in split.labels])
    assert (predict_proba(models.model_from_checkpoint(ck), split.images).argmax(1) == y).mean() >= 0.95


def test_shipped_distilled43_is_the_model_cards_model():
    """artifacts/distilled43.pt: the benchmark's classes and architecture, resumed for 10 epochs with a committee of
    four teachers (the benchmark among them), the epoch best on val kept, its official test recorded; and it
    classifies the embedded sample's test images of the 43 GTSRB classes."""
    import numpy as np

    from core.base import config
    from core.data.datasets import get_dataset, load_split
    from core.learning.inference import predict_proba
    ck = models.load_checkpoint(config.ARTIFACTS_DIR / "distilled43.pt")
    bench = models.load_checkpoint(config.ARTIFACTS_DIR / "benchmark.pt")
    assert ck["class_ids"] == bench["class_ids"] and ck["architecture"] == bench["architecture"] == "bn_stn"
    cfg = ck["config"]
    assert (cfg["mode"], cfg["epochs"], cfg["seed"]) == ("resume", 10, 0)
    assert len(cfg["teachers"]) == 4 and "artifacts/benchmark.pt" in cfg["teachers"]
    kept = next(h for h in ck["history"] if h["epoch"] == ck["metrics"]["best_epoch"])
    assert kept["val_acc"] == max(h["val_acc"] for h in ck["history"]) > bench["metrics"]["best_val_acc"]
    assert abs(ck["metrics"]["test_acc"] - 0.9922) < 5e-4 and ck["metrics"]["test_n"] == 12630
    split = load_split(get_dataset("Sample48"), "test")
    keep = split.labels < 43
    y = split.labels[keep]
    assert (predict_proba(models.model_from_checkpoint(ck), split.images[keep]).argmax(1) == y).mean() >= 0.95


def test_local_contrast_normalisation_ignores_brightness_and_contrast_and_round_trips(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 48)
    lcn = models.LocalContrastNorm()
    assert torch.allclose(lcn(x), lcn(2.5 * x - 0.7), atol=1e-4)  # a darker or flatter copy looks the same
    assert not torch.allclose(lcn(x), x)
    model = models.build_model("bn_stn_lcn", 5)
    assert isinstance(model.lcn, models.LocalContrastNorm)
    assert isinstance(models.build_model("bn_stn", 5).lcn, torch.nn.Identity)
    ck = models.make_checkpoint(model, architecture="bn_stn_lcn", class_ids=list(range(5)),
                                class_names=list("abcde"), dataset="d", dataset_fingerprint="x", parent=None,
                                mode="scratch", epochs=1, history=[], metrics={}, config={})
    models.save_checkpoint(ck, tmp_path / "m.pt")
    again = models.model_from_checkpoint(models.load_checkpoint(tmp_path / "m.pt"))
    model.eval()
    assert torch.allclose(again(x), model(x), atol=1e-6)


@pytest.mark.parametrize("channels, dtype, copies", [(3, torch.float32, True), (29, torch.float32, False),
                                                     (29, torch.bfloat16, True)])
def test_batch_norm_in_a_channels_last_network_matches_the_native_one(channels, dtype, copies):
    torch.manual_seed(0)
    x = torch.randn(8, channels, 12, 12).to(dtype).contiguous(memory_format=torch.channels_last)
    native, ours = torch.nn.BatchNorm2d(channels).train(), models.BatchNorm2d(channels).train()
    ours.load_state_dict(native.state_dict())
    assert ours.copies_layout(x) is copies and not ours.copies_layout(x.contiguous())
    grads = []
    for bn in (native, ours):
        xi = x.clone().requires_grad_(True)
        out = bn(xi)
        (out.float() * torch.arange(out.numel()).view_as(out).float().sin()).sum().backward()
        grads.append((out.detach().float(), xi.grad.float(), bn.weight.grad, bn.running_mean.clone()))
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=tol, rtol=tol)
    assert grads[1][0].is_contiguous(memory_format=torch.channels_last)  # the network stays channels-last
    assert set(native.state_dict()) == set(ours.state_dict())


@pytest.mark.parametrize("arch, shortcuts", [("published", ["0-1 Conv2d 3->1 1x1 + Conv2d 1->29 5x5 (one stem)"]),
                                             ("bn_stn", ["3 Conv2d 3->29 5x5 (narrow)",
                                                         "4-5 BatchNorm2d 29 + MaxPool2d (fused)"])])
def test_a_stage_hook_sees_every_training_stage_and_changes_nothing(arch, shortcuts):
    """``_features(x, stage=...)`` (for bench/profile_step.py) hands on each stage's output as it is made, in order,
    named by its layers; what the hook returns goes on, and a pass-through hook leaves values and gradients alone."""
    torch.manual_seed(0)
    model = models.build_model(arch, 5).train().to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 48, 48).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    seen = []

    def stage(name, t):
        seen.append((name, tuple(t.shape)))
        return t

    torch.manual_seed(1)
    got = model._features(x, stage=stage)
    (g_got,) = torch.autograd.grad(got.square().sum(), x)
    torch.manual_seed(1)
    want = model._features(x)
    (g_want,) = torch.autograd.grad(want.square().sum(), x)
    assert torch.equal(got, want) and torch.equal(g_got, g_want)
    assert seen[-1] == (f"{len(model.features) - 1} Flatten", (4, models.FEATURES))
    assert set(shortcuts) <= {name for name, _ in seen}, [n for n, _ in seen]
    assert [int(name.split()[0].split("-")[0]) for name, _ in seen] == sorted(
        int(name.split()[0].split("-")[0]) for name, _ in seen), "stages come in the layers' order"
    doubled = model._features(x, stage=lambda name, t: t * 2 if name.endswith("Flatten") else t)
    assert torch.allclose(doubled, 2 * want)
