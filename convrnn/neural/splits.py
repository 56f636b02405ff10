"""Cross-validation splits over stimuli (and over repetitions, for ceilings).

Three stimulus schemes:

* ``brainscore`` (default): Brain-Score's ``Split`` — sklearn ``StratifiedShuffleSplit(n_splits=10,
  train_size=0.9, random_state=1)`` over stimuli, stratified by ``object_name`` (plain ``ShuffleSplit`` without
  strata). Stimuli are taken in the order given; :func:`convrnn.neural.trial_array` orders them by sorted
  ``stimulus_id``.
* ``nayebi``: ``brainmodel_utils`` — for seed s = 0..S-1 (default S=5) permute the stimuli with
  ``np.random.RandomState(s)`` and take the first ``ceil(0.8 N)`` as train.
* **selection**: the splits used to choose the best layer per area. Same scheme as the evaluation splits but
  drawn from a different random state (:data:`SELECTION_RANDOM_STATE`), so the layer choice does not reuse the
  evaluation test sets. With a single dataset the selection test images still overlap the evaluation images at
  random (Brain-Score avoids this by selecting on the public and scoring on the private half); pass your own
  splits over a held-out subset if you need strict disjointness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

__all__ = [
    "BRAINSCORE_RANDOM_STATE",
    "SELECTION_RANDOM_STATE",
    "Split",
    "brainscore_splits",
    "make_splits",
    "nayebi_splits",
    "repetition_splits",
    "selection_splits",
    "train_count",
]

BRAINSCORE_RANDOM_STATE = 1
#: Random state of the layer-selection splits: any value other than the evaluation one; fixed for reproducibility.
SELECTION_RANDOM_STATE = 20180711


class Split(NamedTuple):
    """Indices (into the stimulus axis) of one train/test split."""

    train: np.ndarray
    test: np.ndarray


def brainscore_splits(
    n_stimuli: int,
    strata: Sequence[Any] | np.ndarray | None = None,
    *,
    n_splits: int = 10,
    train_size: float = 0.9,
    random_state: int = BRAINSCORE_RANDOM_STATE,
) -> list[Split]:
    """Brain-Score's shuffle splits, stratified by ``strata`` (e.g. ``object_name``) when given."""
    placeholder = np.zeros(n_stimuli)
    if strata is not None:
        strata = np.asarray(strata)
        if len(strata) != n_stimuli:
            raise ValueError(f"strata has {len(strata)} entries for {n_stimuli} stimuli")
        splitter = StratifiedShuffleSplit(n_splits=n_splits, train_size=train_size, random_state=random_state)
        pairs = splitter.split(placeholder, strata)
    else:
        splitter = ShuffleSplit(n_splits=n_splits, train_size=train_size, random_state=random_state)
        pairs = splitter.split(placeholder)
    return [Split(np.asarray(tr), np.asarray(te)) for tr, te in pairs]


def nayebi_splits(n_stimuli: int, *, n_splits: int = 5, train_frac: float = 0.8, start_seed: int = 0) -> list[Split]:
    """``brainmodel_utils`` splits: permutation with seed s, first ``ceil(train_frac * N)`` stimuli train.

    Kept as our own code (not an sklearn splitter) because it reproduces Nayebi et al.'s protocol exactly: one
    ``np.random.RandomState(seed).permutation`` per seed and a ceil-rounded train size, which no sklearn splitter
    yields. The Brain-Score and repetition splits use sklearn's splitters directly."""
    splits = []
    n_train = int(math.ceil(train_frac * n_stimuli))
    for seed in range(start_seed, start_seed + n_splits):
        perm = np.random.RandomState(seed=seed).permutation(n_stimuli)
        splits.append(Split(perm[:n_train], perm[n_train:]))
    return splits


def make_splits(
    n_stimuli: int,
    strata: Sequence[Any] | np.ndarray | None = None,
    *,
    scheme: str = "brainscore",
    n_splits: int | None = None,
    train_size: float | None = None,
    random_state: int | None = None,
) -> list[Split]:
    """Evaluation splits by scheme name (``"brainscore"`` or ``"nayebi"``) with that scheme's defaults."""
    if scheme == "brainscore":
        return brainscore_splits(
            n_stimuli, strata, n_splits=n_splits or 10, train_size=train_size or 0.9,
            random_state=BRAINSCORE_RANDOM_STATE if random_state is None else random_state,
        )
    if scheme == "nayebi":
        return nayebi_splits(
            n_stimuli, n_splits=n_splits or 5, train_frac=train_size or 0.8,
            start_seed=0 if random_state is None else random_state,
        )
    raise ValueError(f"unknown split scheme {scheme!r}; use 'brainscore' or 'nayebi'")


def train_count(n_stimuli: int, scheme: str = "brainscore") -> int:
    """Training stimuli in each evaluation split of ``scheme`` at its default train size: ``floor(0.9 N)`` for
    ``"brainscore"`` (sklearn's rounding), ``ceil(0.8 N)`` for ``"nayebi"``.

    Why here: the checks before a run (enough stimuli for the PLS components) and the choice of strata need the
    split sizes before any split is drawn, and they must agree with :func:`make_splits`.
    """
    if scheme == "brainscore":
        return math.floor(0.9 * n_stimuli)
    return math.ceil(0.8 * n_stimuli)


def selection_splits(
    n_stimuli: int,
    strata: Sequence[Any] | np.ndarray | None = None,
    *,
    scheme: str = "brainscore",
    n_splits: int = 2,
    train_size: float | None = None,
    random_state: int = SELECTION_RANDOM_STATE,
) -> list[Split]:
    """Splits for choosing the best layer: the evaluation scheme with an independent random state."""
    if scheme == "nayebi":
        # brainmodel_utils seeds are 0..S-1; offset them so that no selection seed equals an evaluation seed
        return nayebi_splits(n_stimuli, n_splits=n_splits, train_frac=train_size or 0.8, start_seed=random_state)
    return make_splits(n_stimuli, strata, scheme=scheme, n_splits=n_splits, train_size=train_size,
                       random_state=random_state)


def repetition_splits(
    n_repetitions: int, *, n_splits: int = 10, random_state: int = BRAINSCORE_RANDOM_STATE
) -> list[Split]:
    """Brain-Score's internal-consistency halves: ``ShuffleSplit(train_size=0.5)`` over repetition indices.

    Raises ``ValueError`` with fewer than 2 repetitions (split halves are impossible).
    """
    if n_repetitions < 2:
        raise ValueError(f"split-half reliability needs at least 2 repetitions per stimulus, got {n_repetitions}")
    splitter = ShuffleSplit(n_splits=n_splits, train_size=0.5, random_state=random_state)
    return [Split(np.asarray(a), np.asarray(b)) for a, b in splitter.split(np.zeros(n_repetitions))]
