"""Odd uploads among points of known geometry."""

import numpy as np

from fruit_assets.quality.outliers import (
    flag_against_reference,
    flag_leave_one_out,
    nearest_class,
    robust_threshold,
)


def test_robust_threshold_ignores_the_outliers_it_looks_for():
    distances = np.r_[np.full(95, 1.0) + np.linspace(-0.1, 0.1, 95), [50.0] * 5]
    assert 1.0 < robust_threshold(distances) < 1.5  # a mean + 3 sd threshold would be ~35


def test_planted_outliers_are_found_with_their_nearest_class_and_ordinary_points_are_not():
    rng = np.random.default_rng(3)
    centroids = {"apples": np.zeros(32), "kiwis": np.full(32, 6.0), "photos": np.full(32, -6.0)}
    earlier = centroids["apples"] + rng.normal(0, 1, (200, 32))
    ordinary = centroids["apples"] + rng.normal(0, 1, (40, 32))
    planted = np.r_[centroids["kiwis"] + rng.normal(0, 1, (2, 32)), centroids["photos"] + rng.normal(0, 1, (1, 32))]
    candidates = np.r_[ordinary, planted]
    flagged = flag_against_reference(earlier, candidates)
    indexes = [f.index for f in flagged]
    assert set(range(40, 43)) <= set(indexes)
    assert len([i for i in indexes if i < 40]) <= 1  # ordinary new images (nearly) never flagged
    nearest = [nearest_class(candidates[i], centroids, exclude="apples")[0] for i in (40, 41, 42)]
    assert nearest == ["kiwis", "kiwis", "photos"]
    assert all(f.distance > f.threshold for f in flagged)


def test_a_first_materialization_is_its_own_reference():
    rng = np.random.default_rng(4)
    vectors = rng.normal(0, 1, (60, 16))
    vectors[17] += 12.0
    flagged = flag_leave_one_out(vectors)
    assert [f.index for f in flagged][:1] == [17] and len(flagged) <= 2
    assert flag_leave_one_out(vectors[:2]) == []  # too few to say anything
