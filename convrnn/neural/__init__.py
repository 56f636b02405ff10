"""Neural data and model-to-brain scoring: brainio I/O, PLS/ridge maps on torch, splits, ceilings, scoring.

Stages, each depending only on the ones before: inputs (assembly, plain, trials, stimuli, synthetic, areas) ->
features -> regression (gram, pls, ridge, regression) -> fit (r[layer, bin, split, neuroid]) -> summarise
(ceilings, area medians, best layer) -> report (report, plots). ``scoring.score_model`` runs fit + summarise. The
command on top: config (``FitConfig``) -> inputs (a config's data and model) and checks (before any work) ->
pipeline (``run``) -> cli.

``docs/neural.md`` describes the conventions reproduced here (Brain-Score, Nayebi et al.) and every default.
"""

from .areas import NAYEBI_AREAS, area_masks, default_bin_steps, resolve_areas
from .assembly import check_time_bins, gather_indexes, load_assembly, merge_stimulus_set, save_assembly
from .features import ArrayFeatures, FeatureSource, MemmapFeatures
from .gram import center_gram, gram
from .metrics import (
    CEILING_MISSING,
    CONVENTIONS,
    CeilingResult,
    NayebiResult,
    nayebi_consistency,
    neuron_median,
    noise_correct,
    pearson_r,
    spearman_brown,
    split_half_ceiling,
)
from .plain import from_arrays, load_plain
from .pls import ConstantFeaturesWarning, PLSRegression, pls_kernel, pls_primal
from .ridge import BRAINSCORE_RIDGE_ALPHAS, NAYEBI_RIDGE_ALPHAS, Ridge, RidgeCV
from .scoring import score_model
from .splits import (
    SELECTION_RANDOM_STATE,
    Split,
    brainscore_splits,
    make_splits,
    nayebi_splits,
    repetition_splits,
    selection_splits,
)
from .stimuli import load_image, load_stimulus_set, open_stimulus
from .summarise import DEFAULT_MIN_CEILING, ScoringResult, pick_best_layers, time_average
from .trials import TrialData, average_repetitions, check_trials, trial_array

__all__ = [
    "BRAINSCORE_RIDGE_ALPHAS",
    "CEILING_MISSING",
    "CONVENTIONS",
    "DEFAULT_MIN_CEILING",
    "NAYEBI_AREAS",
    "NAYEBI_RIDGE_ALPHAS",
    "SELECTION_RANDOM_STATE",
    "ArrayFeatures",
    "CeilingResult",
    "ConstantFeaturesWarning",
    "FeatureSource",
    "MemmapFeatures",
    "NayebiResult",
    "PLSRegression",
    "Ridge",
    "RidgeCV",
    "ScoringResult",
    "Split",
    "TrialData",
    "area_masks",
    "average_repetitions",
    "brainscore_splits",
    "center_gram",
    "check_time_bins",
    "check_trials",
    "default_bin_steps",
    "from_arrays",
    "gather_indexes",
    "gram",
    "load_assembly",
    "load_image",
    "load_plain",
    "load_stimulus_set",
    "make_splits",
    "merge_stimulus_set",
    "nayebi_consistency",
    "nayebi_splits",
    "neuron_median",
    "noise_correct",
    "open_stimulus",
    "pearson_r",
    "pick_best_layers",
    "pls_kernel",
    "pls_primal",
    "repetition_splits",
    "resolve_areas",
    "save_assembly",
    "score_model",
    "selection_splits",
    "spearman_brown",
    "split_half_ceiling",
    "time_average",
    "trial_array",
]
