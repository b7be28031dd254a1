"""core.analysis.metrics against scikit-learn where it has the metric, and hand-computed cases for the rest."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from sklearn import metrics as skm

from core.analysis import metrics
from core.base.registries import set_version
from core.analysis.metrics import (LR_CAP, classification_report, confusion_matrix, list_metrics, overall_metrics,
                                   per_class_metrics)


def _random_case(seed: int, n: int = 400, k: int = 7, skill: float = 0.6):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < skill, y_true, rng.integers(0, k, n))
    return y_true, y_pred, list(range(k))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_confusion_matrix_matches_sklearn(seed):
    y_true, y_pred, labels = _random_case(seed)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, labels=labels),
                                  skm.confusion_matrix(y_true, y_pred, labels=labels))


def test_confusion_matrix_follows_label_order_and_non_contiguous_ids():
    y_true, y_pred = [43, 7, 7, 43, 12], [43, 7, 43, 12, 12]
    labels = [43, 7, 12]
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=labels))
    assert cm[0].tolist() == [1, 0, 1]      # true 43: one right, one called 12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_precision_recall_f1_match_sklearn(seed):
    y_true, y_pred, labels = _random_case(seed)
    pc = per_class_metrics(confusion_matrix(y_true, y_pred, labels=labels))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    np.testing.assert_allclose(pc["precision"], p)
    np.testing.assert_allclose(pc["recall"], r)
    np.testing.assert_allclose(pc["f1"], f)
    np.testing.assert_array_equal(pc["support"], s)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_mcc_and_accuracy_match_sklearn_one_vs_rest(seed):
    y_true, y_pred, labels = _random_case(seed)
    pc = per_class_metrics(confusion_matrix(y_true, y_pred, labels=labels))
    for i, c in enumerate(labels):
        t, p = y_true == c, y_pred == c
        assert pc["mcc"][i] == pytest.approx(skm.matthews_corrcoef(t, p))
        assert pc["accuracy"][i] == pytest.approx(skm.accuracy_score(t, p))
        # specificity is the recall of the negative class
        assert pc["specificity"][i] == pytest.approx(skm.recall_score(~t, ~p))
        assert pc["bcr"][i] == pytest.approx(skm.balanced_accuracy_score(t, p))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overall_metrics_match_sklearn(seed):
    y_true, y_pred, labels = _random_case(seed)
    ov = overall_metrics(confusion_matrix(y_true, y_pred, labels=labels))
    assert ov["n"] == len(y_true)
    assert ov["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert ov["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert ov["macro_precision"] == pytest.approx(
        skm.precision_score(y_true, y_pred, average="macro", zero_division=0))
    assert ov["macro_recall"] == pytest.approx(skm.recall_score(y_true, y_pred, average="macro", zero_division=0))
    assert ov["micro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="micro"))
    assert ov["micro_precision"] == pytest.approx(skm.precision_score(y_true, y_pred, average="micro"))
    assert ov["mcc"] == pytest.approx(skm.matthews_corrcoef(y_true, y_pred))
    # macro recall is scikit-learn's balanced accuracy when every class occurs in the truth
    assert ov["macro_recall"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))


def test_hand_computed_binary_like_class():
    # class 0: tp=3, fn=1, fp=2, tn=4  (10 samples, classes 0 and 1)
    y_true = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    y_pred = [0, 0, 0, 1, 0, 0, 1, 1, 1, 1]
    pc = per_class_metrics(confusion_matrix(y_true, y_pred, labels=[0, 1]))
    i = 0
    assert (pc["tp"][i], pc["fn"][i], pc["fp"][i], pc["tn"][i]) == (3, 1, 2, 4)
    sens, spec = 3 / 4, 4 / 6
    assert pc["recall"][i] == pytest.approx(sens)
    assert pc["specificity"][i] == pytest.approx(spec)
    assert pc["plr"][i] == pytest.approx(sens / (1 - spec))          # 2.25
    assert pc["nlr"][i] == pytest.approx((1 - sens) / spec)          # 0.375
    assert pc["bcr"][i] == pytest.approx((sens + spec) / 2)
    assert pc["ber"][i] == pytest.approx(1 - (sens + spec) / 2)
    assert pc["plr"][i] == pytest.approx(2.25) and pc["nlr"][i] == pytest.approx(0.375)
    mcc = (3 * 4 - 2 * 1) / np.sqrt(5 * 4 * 6 * 5)
    assert pc["mcc"][i] == pytest.approx(mcc)


def test_perfect_classifier_gives_capped_plr_and_zero_nlr():
    y = [0, 1, 2, 0, 1, 2]
    pc = per_class_metrics(confusion_matrix(y, y, labels=[0, 1, 2]))
    assert np.all(pc["specificity"] == 1.0) and np.all(pc["recall"] == 1.0)
    assert np.all(pc["plr"] == LR_CAP)          # sens / 0 with sens > 0
    assert np.all(pc["nlr"] == 0.0)             # 0 / 1
    assert np.all(pc["ber"] == 0.0) and np.all(pc["mcc"] == 1.0)
    ov = overall_metrics(confusion_matrix(y, y, labels=[0, 1, 2]))
    assert ov["accuracy"] == 1.0 and ov["macro_f1"] == 1.0 and ov["mcc"] == 1.0


def test_class_never_predicted_is_zero_not_nan():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 1, 1, 1, 1]          # class 2 never predicted
    cm = confusion_matrix(y_true, y_pred, labels=[0, 1, 2])
    pc = per_class_metrics(cm)
    assert pc["precision"][2] == 0.0 and pc["recall"][2] == 0.0 and pc["f1"][2] == 0.0
    assert pc["mcc"][2] == 0.0               # tp+fp = 0 in the MCC denominator
    assert pc["plr"][2] == 0.0               # 0 / (1 - 1) with a zero numerator
    assert pc["nlr"][2] == pytest.approx(1.0)
    for key in list_metrics():
        assert np.all(np.isfinite(pc[key])), key
    assert overall_metrics(cm)["macro_precision"] == pytest.approx(
        skm.precision_score(y_true, y_pred, average="macro", zero_division=0))


def test_class_absent_from_truth_and_predictions_is_left_out_of_macro():
    y_true, y_pred = [0, 1, 1, 0], [0, 1, 0, 0]
    with_absent = overall_metrics(confusion_matrix(y_true, y_pred, labels=[0, 1, 5]))
    without = overall_metrics(confusion_matrix(y_true, y_pred, labels=[0, 1]))
    for key in list_metrics():
        assert with_absent[f"macro_{key}"] == pytest.approx(without[f"macro_{key}"]), key
    assert with_absent["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))


def test_single_class_everything_right_has_no_negatives():
    cm = confusion_matrix([3, 3, 3], [3, 3, 3], labels=[3])
    pc = per_class_metrics(cm)
    assert pc["specificity"][0] == 0.0       # tn + fp = 0: defined value, not NaN
    assert pc["nlr"][0] == 0.0               # 0 / 0
    assert overall_metrics(cm)["mcc"] == 0.0  # scikit-learn's convention for a zero denominator
    with pytest.warns(UserWarning, match="single label"):
        assert skm.matthews_corrcoef([3, 3, 3], [3, 3, 3]) == 0.0


def test_all_wrong_gives_zero_recall_and_capped_nlr_finite():
    y_true, y_pred = [0, 0, 1, 1], [1, 1, 0, 0]
    pc = per_class_metrics(confusion_matrix(y_true, y_pred, labels=[0, 1]))
    assert np.all(pc["recall"] == 0.0) and np.all(pc["specificity"] == 0.0)
    assert np.all(pc["nlr"] == LR_CAP)      # (1 - 0) / 0
    assert np.all(pc["plr"] == 0.0)         # 0 / (1 - 0)
    assert np.all(pc["mcc"] == -1.0)
    assert np.all(pc["ber"] == 1.0)


def test_report_is_strict_json_and_keyed_by_class_id():
    y_true, y_pred, _ = _random_case(5, n=120, k=4)
    y_true, y_pred = y_true + 40, y_pred + 40
    labels = [40, 41, 42, 43, 44]           # 44 never occurs
    rep = classification_report(y_true, y_pred, labels=labels)
    text = json.dumps(rep, allow_nan=False)  # raises on NaN / inf
    back = json.loads(text)
    assert set(back["per_class"]) == {str(c) for c in labels}
    assert back["per_class"]["40"]["support"] == int(np.sum(y_true == 40))
    assert set(list_metrics()) <= set(back["per_class"]["41"])
    assert np.array(back["confusion"]).sum() == 120
    assert back["overall"]["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))


@pytest.mark.parametrize("bad, msg", [
    (dict(y_true=[0, 1], y_pred=[0], labels=[0, 1]), "must match"),
    (dict(y_true=[], y_pred=[], labels=[0, 1]), "no samples"),
    (dict(y_true=[0, 9], y_pred=[0, 1], labels=[0, 1]), r"\[9\]"),
    (dict(y_true=[0], y_pred=[0], labels=[0, 0]), "distinct"),
])
def test_bad_input_gives_clear_error(bad, msg):
    with pytest.raises(ValueError, match=msg):
        confusion_matrix(bad["y_true"], bad["y_pred"], labels=bad["labels"])


def test_per_class_rejects_empty_or_non_square():
    with pytest.raises(ValueError, match="square"):
        per_class_metrics(np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="non-empty"):
        per_class_metrics(np.zeros((2, 2), int))


def test_every_metric_is_one_complete_record_and_unknown_names_list_the_valid_ones():
    for name in list_metrics():
        m = metrics.get_metric(name)
        assert m.name == name and m.label and m.help and m.format in metrics.FORMATS and callable(m.compute)
    assert list_metrics()[:3] == ("accuracy", "precision", "recall")
    assert not metrics.get_metric("nlr").higher_is_better and metrics.get_metric("f1").higher_is_better
    assert metrics.format_value("plr", LR_CAP) == "\u221e" and metrics.format_value("f1", 0.5) == "50.00%"
    with pytest.raises(ValueError, match="unknown metric 'vibes'; valid: accuracy, precision"):
        metrics.get_metric("vibes")


def test_the_metric_set_version_follows_the_registry(monkeypatch):
    # reports saved before the stamp were made by these ten metrics, each at version 1
    ten = ("accuracy", "precision", "recall", "specificity", "f1", "plr", "nlr", "bcr", "ber", "mcc")
    assert metrics.UNSTAMPED_VERSION == set_version((n, 1) for n in ten)
    today = metrics.metrics_version()
    monkeypatch.setitem(metrics.REGISTRY.table, "f1", replace(metrics.get_metric("f1"), version=2))
    assert metrics.metrics_version() != today
    monkeypatch.setitem(metrics.REGISTRY.table, "f1", replace(metrics.get_metric("f1"), version=1))
    assert metrics.metrics_version() == today


def test_a_registered_metric_joins_every_report(monkeypatch):
    toy = metrics.Metric("toy", "Toy", lambda c: c.tp.astype(np.float64), True, "number", "true positives")
    monkeypatch.setitem(metrics.REGISTRY.table, "toy", toy)
    rep = classification_report([0, 1, 1], [0, 1, 0], labels=[0, 1])
    assert rep["per_class"][1]["toy"] == 1.0 and rep["overall"]["macro_toy"] == 1.0
    assert rep["metrics_version"] == metrics.metrics_version() != metrics.UNSTAMPED_VERSION


def test_the_headline_is_an_ordered_table_of_overall_metrics_a_report_holds():
    assert metrics.list_headlines() == ("accuracy", "macro_f1", "macro_precision", "macro_recall", "mcc")
    assert metrics.list_headlines(compared=True) == ("accuracy", "macro_f1")
    assert metrics.get_headline("mcc").label == "Matthews corr."
    overall = classification_report([0, 1, 1, 2], [0, 1, 0, 2], labels=[0, 1, 2])["overall"]
    for name in metrics.list_headlines():
        h = metrics.get_headline(name)
        assert h.name == name and h.label and h.help and name in overall
    with pytest.raises(ValueError, match="unknown headline metric 'vibes'; valid: accuracy, macro_f1"):
        metrics.get_headline("vibes")


def test_compared_metrics_come_from_the_records_and_include_the_default_chart_metric(monkeypatch):
    assert metrics.list_compared() == ("precision", "recall", "f1")
    assert metrics.DEFAULT_CHART_METRIC in metrics.list_compared()
    monkeypatch.setitem(metrics.REGISTRY.table, "mcc", replace(metrics.get_metric("mcc"), compared=True))
    assert metrics.list_compared() == ("precision", "recall", "f1", "mcc")
