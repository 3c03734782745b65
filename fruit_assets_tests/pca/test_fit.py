import numpy as np
import pytest

from fruit_assets.pca import Moments, choose_k, fit_from_moments, load_pca, project, save_pca


def data(n=400, d=40, seed=0):
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(d, d))
    scales = np.geomspace(10, 0.01, d)
    return rng.normal(size=(n, d)) * scales @ basis + 50.0  # large mean: tests numerical stability


def test_merged_moments_equal_direct_moments_in_any_split():
    x = data()
    direct = Moments.of(x)
    merged = Moments.empty(x.shape[1])
    for chunk in np.array_split(x, [3, 50, 51, 200]):
        merged = merged.merge(Moments.of(chunk))
    assert merged.count == len(x)
    np.testing.assert_allclose(merged.mean, x.mean(axis=0), rtol=1e-12)
    centred = x - x.mean(axis=0)
    np.testing.assert_allclose(merged.scatter, centred.T @ centred, rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(Moments.from_bytes(merged.to_bytes()).scatter, direct.scatter, rtol=1e-9, atol=1e-7)


def test_fit_matches_numpy_eigh_and_selects_smallest_k():
    x = data()
    model = fit_from_moments(Moments.of(x), 0.95)
    centred = x - x.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(centred, rowvar=False))
    values, vectors = values[::-1], vectors[:, ::-1]
    ratios = values / values.sum()
    expected_k = int(np.argmax(np.cumsum(ratios) >= 0.95)) + 1
    assert model.k == expected_k
    assert np.cumsum(ratios)[model.k - 2] < 0.95 <= model.explained_variance
    np.testing.assert_allclose(model.explained_variance_ratio, ratios[: model.k], atol=1e-9)
    for got, want in zip(model.components, vectors[:, : model.k].T):
        assert abs(abs(float(got @ want)) - 1) < 1e-8  # same direction up to sign
    np.testing.assert_allclose(model.components @ model.components.T, np.eye(model.k), atol=1e-10)


@pytest.mark.parametrize("target, k", [(0.5, 1), (0.6, 2), (0.9, 3), (1.0, 4)])
def test_choose_k(target, k):
    assert choose_k(np.array([0.5, 0.25, 0.15, 0.1]), target) == k


@pytest.mark.parametrize("target", [0.0, -0.1, 1.01])
def test_target_out_of_range_is_rejected(target):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        choose_k(np.array([1.0]), target)


def test_projection_and_npz_round_trip():
    x = data(n=100, d=12)
    model = fit_from_moments(Moments.of(x), 0.99)
    restored = load_pca(save_pca(model))
    np.testing.assert_array_equal(restored.components, model.components)
    reduced = project(x, restored)
    assert reduced.dtype == np.float32 and reduced.shape == (100, model.k)
    np.testing.assert_allclose(reduced, (x - x.mean(axis=0)) @ model.components.T, rtol=1e-5, atol=1e-4)


def test_sign_convention_is_deterministic():
    x = data(seed=3)
    first = fit_from_moments(Moments.of(x), 0.9)
    second = fit_from_moments(Moments.of(x[::-1].copy()), 0.9)
    np.testing.assert_allclose(first.components, second.components, atol=1e-8)


def test_subtracted_moments_are_those_of_the_other_rows_even_after_many_updates():
    """What a refit from kept moments relies on: total - superseded + added, chained, stays the
    moments of the rows now (large mean: the subtraction must not cancel)."""
    x = data(n=600, d=30)
    rest = Moments.of(x[100:])
    got = Moments.of(x).subtract(Moments.of(x[:100]))
    assert got.count == 500
    np.testing.assert_allclose(got.mean, rest.mean, rtol=1e-12)
    np.testing.assert_allclose(got.scatter, rest.scatter, rtol=1e-9, atol=1e-9 * np.abs(rest.scatter).max())

    rng = np.random.default_rng(3)
    rows, moments = x.copy(), Moments.of(x)
    for _update in range(64):  # as many chained updates as steps/moments.py allows
        start = int(rng.integers(0, len(rows) - 20))
        replaced = rows[start:start + 20]
        added = rng.normal(size=(int(rng.integers(0, 30)), x.shape[1])) * 3 + 50.0
        moments = moments.subtract(Moments.of(replaced)).merge(Moments.of(added))
        rows = np.concatenate([rows[:start], rows[start + 20:], added])
    direct = Moments.of(rows)
    assert moments.count == len(rows)
    np.testing.assert_allclose(moments.mean, direct.mean, rtol=1e-10)
    np.testing.assert_allclose(moments.scatter, direct.scatter, atol=1e-9 * np.abs(direct.scatter).max())
    assert Moments.of(x).subtract(Moments.of(x)).count == 0
    with pytest.raises(ValueError, match="cannot take 600 rows out of moments of 100"):
        Moments.of(x[:100]).subtract(Moments.of(x))
