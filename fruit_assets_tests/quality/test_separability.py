"""k-NN separability on points of known geometry."""

import numpy as np

from fruit_assets.pca.fit import Moments, fit_from_moments
from fruit_assets.quality.separability import held_out, knn_accuracy, path_hash, sample_rates, sampled, separability


def clusters(rng, centres: np.ndarray, per_class: int, spread: float):
    vectors, labels, paths = [], [], []
    for index, centre in enumerate(centres):
        vectors.append(centre + rng.normal(0, spread, (per_class, len(centre))))
        labels += [f"class {index}"] * per_class
        paths += [f"s3://b/Training/class {index}/{i}.jpg" for i in range(per_class)]
    return np.concatenate(vectors), labels, paths


def test_split_and_sample_are_stable_hashes_of_the_path():
    paths = [f"file:///data/Training/Banana/{i}_100.jpg" for i in range(5000)]
    assert [held_out(p) for p in paths] == [held_out(p) for p in paths]
    assert 0.17 < np.mean([held_out(p) for p in paths]) < 0.23
    assert 0 <= path_hash(paths[0]) < 1 and path_hash(paths[0]) != path_hash(paths[0], "x")
    # The same images under another data root are split the same way: the side of an image does
    # not depend on the bucket or folder the dataset was copied to.
    moved = [p.replace("file:///data/", "s3://other-bucket/fruits/") for p in paths]
    assert [held_out(p) for p in moved] == [held_out(p) for p in paths]
    assert [sampled(p, 0.04) for p in moved] == [sampled(p, 0.04) for p in paths]
    assert path_hash("file:///data/Training/Banana/1_100.jpg") != path_hash("file:///data/Training/Kiwi/1_100.jpg")
    rates = sample_rates({"Banana": 5000, "Kiwi": 50}, per_class=200)
    assert rates == {"Banana": 0.04, "Kiwi": 1.0}
    assert 150 < sum(sampled(p, rates["Banana"]) for p in paths) < 250


def test_separable_clusters_score_high_on_both_sides_and_pca_costs_little():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 10, (5, 40))
    vectors, labels, paths = clusters(rng, centres, 60, 1.0)
    model = fit_from_moments(Moments.of(vectors), 0.95)
    result = separability(vectors, labels, paths, model.mean, model.basis, model.spectrum, model.k)
    assert result.full.overall > 0.95 and result.reduced.overall > 0.95
    assert abs(result.loss) <= 0.02 and result.keeping_target is None
    assert result.held_out == sum(held_out(p) for p in paths) and result.sample_size == 300
    assert set(result.full.per_class) == {f"class {i}" for i in range(5)}


def test_a_pca_that_drops_the_separating_direction_is_caught_and_a_keeping_target_named():
    """Both classes spread along one loud direction (shared "pose"), apart along one quiet one.
    Nearest neighbours in the full space share the pose, so the quiet offset decides: k-NN is
    perfect. A 0.9 target keeps only the loud direction, and the classes become one."""
    rng = np.random.default_rng(1)
    n, dims = 200, 6
    vectors = rng.normal(0, 0.05, (2 * n, dims))
    vectors[:, 0] = np.r_[rng.uniform(0, 100, n), rng.uniform(0, 100, n)]  # the loud direction
    vectors[n:, 1] += 2.0  # the quiet direction that separates the classes
    labels = ["near"] * n + ["far"] * n
    paths = [f"file:///d/{i}.jpg" for i in range(2 * n)]
    model = fit_from_moments(Moments.of(vectors), 0.9)
    assert model.k == 1
    result = separability(vectors, labels, paths, model.mean, model.basis, model.spectrum, model.k)
    assert result.full.overall > 0.97 and result.reduced.overall < 0.75 and result.loss > 0.2
    assert result.keeping_target is not None and result.keeping_target > 0.9 and result.keeping_k >= 2
    kept = knn_accuracy((vectors - model.mean) @ model.basis[: result.keeping_k].T, labels,
                        np.array([held_out(p) for p in paths]))
    assert result.full.overall - kept.overall <= 0.02


def test_confusion_names_the_classes_that_mix():
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [0.3, 0.0], [50.0, 50.0]])  # the first two overlap
    vectors, labels, paths = clusters(rng, centres, 80, 1.0)
    accuracy = knn_accuracy(vectors, labels, np.array([held_out(p) for p in paths]))
    assert accuracy.per_class["class 2"][0] == accuracy.per_class["class 2"][1]  # the far class is perfect
    assert set(accuracy.most_confused(2)) == {"class 0", "class 1"}


def test_the_float32_candidate_search_gives_the_float64_neighbours_even_for_near_ties():
    """Points at distances that differ below float32's resolution, duplicates and a far offset:
    the prediction is that of an exact float64 search (ties to the nearer total, then the earlier point)."""
    from fruit_assets.quality.separability import knn_predict

    rng = np.random.default_rng(3)
    base = rng.normal(size=(1, 64)) * 1000.0  # large norms, small differences: float32 alone cannot tell them
    train = np.repeat(base, 40, axis=0)
    train += rng.normal(size=train.shape) * 1e-3
    train[5] = train[6]  # a duplicate
    labels = np.array([f"c{i % 4}" for i in range(40)], dtype=object)
    test = base + rng.normal(size=(30, 64)) * 1e-3

    def exact(row):
        distances = ((train - row) ** 2).sum(axis=1)
        order = np.lexsort((np.arange(len(train)), distances))[:5]
        votes = {}
        for i in order:
            count, total = votes.get(labels[i], (0, 0.0))
            votes[labels[i]] = (count + 1, total + distances[i])
        return max(sorted(votes), key=lambda label: (votes[label][0], -votes[label][1]))

    assert list(knn_predict(train, labels, test, k=5)) == [exact(row) for row in test]
