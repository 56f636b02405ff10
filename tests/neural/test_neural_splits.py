"""Cross-validation splits over stimuli and repetitions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

from convrnn.neural import brainscore_splits, make_splits, nayebi_splits, repetition_splits, selection_splits


def test_brainscore_splits_equal_sklearn_stratified_shuffle_split() -> None:
    objects = np.repeat([f"obj{i}" for i in range(64)], 50)  # HvM public: 3,200 images, 64 objects
    ours = brainscore_splits(len(objects), objects)
    reference = StratifiedShuffleSplit(n_splits=10, train_size=0.9, random_state=1).split(np.zeros(3200), objects)
    assert len(ours) == 10
    for split, (train, test) in zip(ours, reference, strict=True):
        np.testing.assert_array_equal(split.train, train)
        np.testing.assert_array_equal(split.test, test)
        assert len(split.train) == 2880 and len(split.test) == 320
        assert len(np.intersect1d(split.train, split.test)) == 0
        # stratified: every object has 5 of its 50 images in the test set
        assert set(np.unique(objects[split.test], return_counts=True)[1]) == {5}


def test_unstratified_brainscore_splits_equal_shuffle_split() -> None:
    ours = brainscore_splits(100)
    for split, (train, test) in zip(ours, ShuffleSplit(10, train_size=0.9, random_state=1).split(np.zeros(100)),
                                    strict=True):
        np.testing.assert_array_equal(split.train, train)
        np.testing.assert_array_equal(split.test, test)


def test_nayebi_splits_by_hand() -> None:
    splits = nayebi_splits(11)
    assert len(splits) == 5
    for seed, split in enumerate(splits):
        perm = np.random.RandomState(seed).permutation(11)
        np.testing.assert_array_equal(split.train, perm[:9])  # ceil(0.8 * 11) = 9
        np.testing.assert_array_equal(split.test, perm[9:])
    assert make_splits(11, scheme="nayebi")[2].train.tolist() == splits[2].train.tolist()


def test_selection_splits_are_independent_of_evaluation() -> None:
    objects = np.repeat(np.arange(10), 20)
    evaluation = make_splits(200, objects)
    selection = selection_splits(200, objects, n_splits=3)
    assert len(selection) == 3
    for sel in selection:
        assert len(sel.train) == 180
        assert all(not np.array_equal(np.sort(sel.test), np.sort(ev.test)) for ev in evaluation)
    nayebi_sel = selection_splits(200, scheme="nayebi", n_splits=2)
    assert all(not np.array_equal(s.train, e.train) for s in nayebi_sel for e in nayebi_splits(200))


def test_repetition_splits() -> None:
    splits = repetition_splits(7)
    reference = ShuffleSplit(n_splits=10, train_size=0.5, random_state=1).split(np.zeros(7))
    for split, (a, b) in zip(splits, reference, strict=True):
        np.testing.assert_array_equal(split.train, a)
        np.testing.assert_array_equal(split.test, b)
        assert len(split.train) == 3 and len(split.test) == 4
    with pytest.raises(ValueError, match="at least 2 repetitions"):
        repetition_splits(1)
    with pytest.raises(ValueError, match="unknown split scheme"):
        make_splits(10, scheme="nope")
