import numpy as np
import pytest

from mtsearch.tasks import TASKS, overall_score, pearson, task_score


def test_accuracy_and_pearson():
    assert task_score("sst", np.array([0, 1, 2, 3]), np.array([0, 1, 0, 3])) == 0.75
    x = np.array([0.0, 1.0, 2.0, 3.0])
    assert task_score("sts", x, 2 * x + 1) == pytest.approx(1.0)
    assert task_score("sts", x, -x) == pytest.approx(-1.0)
    assert pearson(np.ones(4), x) == 0.0  # a constant predictor has no correlation
    y = np.array([1.0, 3.0, 2.0, 5.0])
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])


def test_overall_is_the_leaderboard_formula():
    scores = {"sst": 0.5, "para": 0.8, "sts": 0.6, "cfimdb": 0.99}
    assert overall_score(scores) == pytest.approx((0.5 + 0.8 + (0.6 + 1) / 2) / 3)


def test_task_specs():
    assert TASKS["sst"].num_labels == 5 and TASKS["sst"].inputs == "single"
    assert TASKS["para"].inputs == "pair" and TASKS["sts"].kind == "regression"
    assert not TASKS["cfimdb"].in_overall
