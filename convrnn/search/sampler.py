"""The study's sampler, from the config's ``sampler:`` section.

``{name: tpe}`` (the default) is Optuna's TPE with ``multivariate=True`` (joint model of the knobs),
``group=True`` (the cell-type branches are modelled apart: their knobs never co-occur) and
``constant_liar=True`` (parallel workers do not all sample next to the same running trial). ``{name: random}``
is random search. Any other name is a class of ``optuna.samplers`` (``QMCSampler``, ``GPSampler``, ...) with
the remaining keys as its keyword arguments.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import Any

import optuna

from convrnn.errors import UserConfigError

SHORT_NAMES = {"tpe": "TPESampler", "random": "RandomSampler", "gp": "GPSampler", "qmc": "QMCSampler",
               "nsga2": "NSGAIISampler", "nsga3": "NSGAIIISampler", "cmaes": "CmaEsSampler"}
TPE_DEFAULTS = {"multivariate": True, "group": True, "constant_liar": True}


def _sampler_class(name: str, key: str) -> type:
    cls_name = SHORT_NAMES.get(name, name)
    cls = getattr(optuna.samplers, cls_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, optuna.samplers.BaseSampler)):
        raise UserConfigError(f"{key}.name", f"unknown sampler {name!r}; use {sorted(SHORT_NAMES)} or a class "
                                             "name of optuna.samplers")
    return cls


def check_sampler_spec(spec: Mapping[str, Any], key: str = "sampler") -> dict[str, Any]:
    """Validate a sampler spec (name + keyword arguments of its class)."""
    spec = dict(spec)
    name = spec.setdefault("name", "tpe")
    if not isinstance(name, str):
        raise UserConfigError(f"{key}.name", f"must be a string, got {name!r}")
    cls = _sampler_class(name, key)
    params = inspect.signature(cls.__init__).parameters
    for arg in spec:
        if arg != "name" and arg not in params:
            raise UserConfigError(f"{key}.{arg}", f"not an argument of optuna.samplers.{cls.__name__}; "
                                                  f"arguments: {sorted(p for p in params if p != 'self')}")
    return spec


def build_sampler(spec: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    spec = dict(spec)
    cls = _sampler_class(spec.pop("name", "tpe"), "sampler")
    if cls is optuna.samplers.TPESampler:
        spec = {**TPE_DEFAULTS, **spec}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # group=True is "experimental"
        return cls(**spec)
