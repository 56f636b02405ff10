"""The search space is data: a YAML mapping of knobs, validated before any trial, turned into model graphs.

Layout of the ``space:`` section of a search config (docs/search.md has the full reference)::

    space:
      cell:
        type: {choices: [rgc, ugrnn]}           # or a constant: rgc
        rgc:                                    # knobs of that cell type: kwargs of its class (or preset)
          preset: median                        # constants are allowed
          tau_kernel: {choices: [3, 5, 7]}
          tau_offset: {low: 0.5, high: 1.5}
          tau_multiplier: {tied_to: tau_offset, factor: -1.0}
        ugrnn: {}
      feedback:                                 # long-range edges: higher node -> lower node
        nodes: [conv4, conv5, conv6]            # default: every node with a cell
        max_edges: 3
        threshold: 0.5
      training:
        lr: {low: 0.01, high: 0.2, log: true}
        batch_size: {choices: [16, 32]}

Parameter names in the study are per branch (``cell.type``, ``rgc.tau_kernel``, ``ugrnn.forget_bias``,
``edge.conv8->conv5``, ``train.lr``), so a distribution never changes within a study (Optuna refuses that)
and ``TPESampler(group=True)`` can model each branch on its own.

Each candidate feedback edge is a float in [0, 1] (``edge.S->T``); it is in the model when the value is at least
``threshold``, and when more than ``max_edges`` pass, only the ``max_edges`` largest values are kept. This
mirrors the release's per-edge value compared to a threshold (``p_edge``); the exact rule of the original search
is unknown, so this one is our choice (docs/search.md).
"""

from __future__ import annotations

import copy
import inspect
import math
import statistics
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convrnn.cells import CELLS, RGC_PRESETS, cell_options
from convrnn.errors import UserConfigError
from convrnn.graph.spec import ConfigError, load_yaml_graph

#: training hyperparameters the space may set, and where they go in the trial's LightningCLI config
TRAINING_KEYS: dict[str, tuple[str, str]] = {
    "lr": ("model", "lr"),
    "batch_size": ("data", "batch_size"),
    "gradient_clip_val": ("trainer", "gradient_clip_val"),
    "weight_decay_scale": ("model", "weight_decay_scale"),
    "momentum": ("model", "momentum"),
    "warmup_steps": ("model", "warmup_steps"),
    "label_smoothing": ("model", "label_smoothing"),
}
CELL_KEYS = {"type"} | set(CELLS)
FEEDBACK_KEYS = {"nodes", "candidates", "max_edges", "threshold"}
SPACE_KEYS = {"cell", "feedback", "training"}
#: cell options that are structural (set by the graph, never searched)
NOT_SEARCHABLE = {"in_channels", "out_channels", "spatial_size", "residual_channels", "feedback_channels"}


# --------------------------------------------------------------------------------------------- knob specs
@dataclass(frozen=True)
class Knob:
    """One searchable value: a constant, a categorical choice, a numeric range, or tied to another knob."""

    name: str  # the study's parameter name (``rgc.tau_kernel``)
    kind: str  # "const" | "choice" | "int" | "float" | "tied"
    value: Any = None  # const
    choices: tuple = ()  # choice
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: float | None = None
    tied_to: str | None = None  # tied: the short name of the knob in the same branch
    factor: float = 1.0

    @property
    def sampled(self) -> bool:
        return self.kind in ("choice", "int", "float")

    @property
    def numeric(self) -> bool:
        """True when the median of several values is meaningful (numbers, not switches or names)."""
        if self.kind in ("int", "float"):
            return True
        if self.kind == "choice":
            return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in self.choices)
        return False


def parse_knob(name: str, spec: Any, key: str) -> Knob:
    """A knob from its YAML form; ``key`` is the dotted config key used in errors."""
    if not isinstance(spec, Mapping):
        if isinstance(spec, (list, tuple)):
            raise UserConfigError(key, f"a list is not a knob; write {{choices: {list(spec)}}} to search over it")
        return Knob(name, "const", value=spec)
    spec = dict(spec)
    if "choices" in spec:
        _only(spec, {"choices"}, key)
        choices = spec["choices"]
        if not isinstance(choices, (list, tuple)) or not choices:
            raise UserConfigError(key, f"choices must be a non-empty list, got {choices!r}")
        if len({repr(c) for c in choices}) != len(choices):
            raise UserConfigError(key, f"choices has duplicates: {choices!r}")
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise UserConfigError(key, f"choices must be numbers, booleans, strings or null, got {c!r}")
        return Knob(name, "choice", choices=tuple(choices))
    if "tied_to" in spec:
        _only(spec, {"tied_to", "factor"}, key)
        factor = spec.get("factor", 1.0)
        if not isinstance(factor, (int, float)) or isinstance(factor, bool):
            raise UserConfigError(f"{key}.factor", f"must be a number, got {factor!r}")
        return Knob(name, "tied", tied_to=str(spec["tied_to"]), factor=float(factor))
    if "low" in spec or "high" in spec:
        _only(spec, {"low", "high", "log", "step"}, key)
        low, high = spec.get("low"), spec.get("high")
        for end, v in (("low", low), ("high", high)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise UserConfigError(f"{key}.{end}", f"must be a finite number, got {v!r}")
        if not low < high:
            raise UserConfigError(key, f"empty range: low ({low}) must be < high ({high})")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise UserConfigError(f"{key}.low", f"a log range needs low > 0, got {low}")
        step = spec.get("step")
        if step is not None and (not isinstance(step, (int, float)) or step <= 0):
            raise UserConfigError(f"{key}.step", f"must be > 0, got {step!r}")
        if step is not None and log:
            raise UserConfigError(key, "step and log cannot be combined")
        is_int = isinstance(low, int) and isinstance(high, int) and (step is None or isinstance(step, int))
        return Knob(name, "int" if is_int else "float", low=low, high=high, log=log, step=step)
    raise UserConfigError(key, f"a knob is a constant, {{choices: [...]}}, {{low: .., high: ..}} or "
                               f"{{tied_to: .., factor: ..}}; got {spec!r}")


def _only(spec: Mapping, allowed: set[str], key: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise UserConfigError(key, f"unknown field(s) {unknown}; allowed here: {sorted(allowed)}")


Getter = Callable[[Knob], Any]


def _suggest(trial: Any) -> Getter:
    """A getter that samples each knob from an Optuna trial."""

    def get(knob: Knob) -> Any:
        if knob.kind == "choice":
            return trial.suggest_categorical(knob.name, list(knob.choices))
        if knob.kind == "int":
            return trial.suggest_int(knob.name, int(knob.low), int(knob.high), step=int(knob.step or 1),
                                     log=knob.log)
        return trial.suggest_float(knob.name, float(knob.low), float(knob.high), step=knob.step, log=knob.log)

    return get


def _lookup(params: Mapping[str, Any]) -> Getter:
    """A getter that reads each knob from a finished trial's parameters."""

    def get(knob: Knob) -> Any:
        if knob.name not in params:
            raise KeyError(f"parameter {knob.name!r} is missing from the trial (was the space changed?)")
        return params[knob.name]

    return get


# ----------------------------------------------------------------------------------------------- the point
@dataclass
class Point:
    """One architecture + training setting: what a trial trains."""

    cell_type: str | None  # None: the base graph's cells are left as they are
    cell_options: dict[str, Any] = field(default_factory=dict)
    edges: list[tuple[str, str]] | None = None  # None: the base graph's feedback is left as it is
    edge_values: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


def edge_name(source: str, target: str) -> str:
    return f"edge.{source}->{target}"


# ---------------------------------------------------------------------------------------------- the space
class SearchSpace:
    """The validated ``space:`` section over a base model graph (see the module doc)."""

    def __init__(self, space: Mapping[str, Any] | None, base_graph: Mapping[str, Any], key: str = "space") -> None:
        space = dict(space or {})
        unknown = sorted(set(space) - SPACE_KEYS)
        if unknown:
            raise UserConfigError(key, f"unknown section(s) {unknown}; allowed: {sorted(SPACE_KEYS)}")
        self.base_graph = {k: v for k, v in copy.deepcopy(dict(base_graph)).items() if k != "_source"}
        nodes = self.base_graph.get("nodes")
        if not isinstance(nodes, Mapping) or not nodes:
            raise UserConfigError("model.base", "the base graph has no nodes")
        self.node_names = list(nodes)
        self.cell_nodes = [n for n, node in nodes.items() if (node or {}).get("cell") is not None]
        self._parse_cell(space.get("cell"), f"{key}.cell")
        self._parse_feedback(space.get("feedback"), f"{key}.feedback")
        self._parse_training(space.get("training"), f"{key}.training")

    # ---------------------------------------------------------------------------------------- parsing
    def _parse_cell(self, spec: Any, key: str) -> None:
        self.cell_type_knob: Knob | None = None
        self.branches: dict[str, dict[str, Knob]] = {}
        if spec is None:
            return
        if not isinstance(spec, Mapping):
            raise UserConfigError(key, f"must be a mapping, got {spec!r}")
        unknown = sorted(set(spec) - CELL_KEYS)
        if unknown:
            raise UserConfigError(f"{key}.{unknown[0]}", f"unknown cell type or key; cell types: {sorted(CELLS)}")
        if not self.cell_nodes:
            raise UserConfigError(key, "the base graph has no node with a cell to search over")
        if "type" not in spec:
            raise UserConfigError(f"{key}.type", "missing: a cell type (e.g. rgc) or {choices: [rgc, lstm]}")
        self.cell_type_knob = parse_knob("cell.type", spec["type"], f"{key}.type")
        if self.cell_type_knob.kind == "const":
            kinds = [self.cell_type_knob.value]
        elif self.cell_type_knob.kind == "choice":
            kinds = list(self.cell_type_knob.choices)
        else:
            raise UserConfigError(f"{key}.type", "must be a cell type name or {choices: [...]}")
        for kind in kinds:
            if kind not in CELLS:
                raise UserConfigError(f"{key}.type", f"unknown cell type {kind!r}; known: {sorted(CELLS)}")
        for kind in set(spec) - {"type"}:
            if kind not in kinds:
                raise UserConfigError(f"{key}.{kind}", f"knobs for cell type {kind!r}, which {key}.type never "
                                                       f"picks (types: {kinds})")
        for kind in kinds:
            self.branches[kind] = self._parse_branch(kind, spec.get(kind) or {}, f"{key}.{kind}")

    def _parse_branch(self, kind: str, spec: Any, key: str) -> dict[str, Knob]:
        if not isinstance(spec, Mapping):
            raise UserConfigError(key, f"must be a mapping of {kind} options, got {spec!r}")
        allowed = cell_options(kind) - NOT_SEARCHABLE
        knobs: dict[str, Knob] = {}
        for option, value in spec.items():
            where = f"{key}.{option}"
            if option not in allowed:
                raise UserConfigError(where, f"unknown {kind} option; options of {CELLS[kind].__name__}: "
                                             f"{sorted(allowed)}")
            knob = parse_knob(f"{kind}.{option}", value, where)
            if option == "preset" and (knob.kind != "const" or knob.value not in RGC_PRESETS):
                raise UserConfigError(where, f"must be one of the RGC presets {sorted(RGC_PRESETS)} "
                                             "(a constant)")
            knobs[option] = knob
        for option, knob in knobs.items():
            if knob.kind == "tied":
                target = knobs.get(knob.tied_to or "")
                if target is None:
                    raise UserConfigError(f"{key}.{option}.tied_to", f"{knob.tied_to!r} is not a knob of {key}")
                if target.kind == "tied" or not (target.kind in ("int", "float", "const") or target.numeric):
                    raise UserConfigError(f"{key}.{option}.tied_to", f"{knob.tied_to!r} must be a numeric knob")
        self._check_values(kind, knobs, key)
        return knobs

    @staticmethod
    def _check_values(kind: str, knobs: Mapping[str, Knob], key: str) -> None:
        """Type-check every value a knob can take against the cell's signature defaults (bool vs int vs str)."""
        params = inspect.signature(CELLS[kind].__init__).parameters
        for option, knob in knobs.items():
            if option == "preset" or option not in params:
                continue
            default = params[option].default
            values = [knob.value] if knob.kind == "const" else list(knob.choices) if knob.kind == "choice" else []
            for v in values:
                if isinstance(default, bool) and not isinstance(v, bool):
                    raise UserConfigError(f"{key}.{option}", f"is a switch (true/false), got {v!r}")
                if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                        isinstance(v, bool) or not isinstance(v, (int, float))) and v is not None:
                    raise UserConfigError(f"{key}.{option}", f"must be a number, got {v!r}")
                if isinstance(default, str) and not isinstance(v, str):
                    raise UserConfigError(f"{key}.{option}", f"must be a string, got {v!r}")
            if isinstance(default, bool) and knob.kind in ("int", "float"):
                raise UserConfigError(f"{key}.{option}", "is a switch: use {choices: [true, false]}")

    def _parse_feedback(self, spec: Any, key: str) -> None:
        self.edge_candidates: list[tuple[str, str]] | None = None
        self.max_edges: int | None = None
        self.threshold = 0.5
        if spec is None:
            return
        if not isinstance(spec, Mapping):
            raise UserConfigError(key, f"must be a mapping, got {spec!r}")
        _only(spec, FEEDBACK_KEYS, key)
        order = {n: i for i, n in enumerate(self.node_names)}
        nodes = spec.get("nodes", self.cell_nodes)
        if not isinstance(nodes, (list, tuple)) or not nodes:
            raise UserConfigError(f"{key}.nodes", f"must be a non-empty list of node names, got {nodes!r}")
        for i, n in enumerate(nodes):
            if n not in order:
                raise UserConfigError(f"{key}.nodes[{i}]", f"{n!r} is not a node of the base graph; nodes: "
                                                           f"{self.node_names}")
        candidates = spec.get("candidates", "all")
        if candidates == "all":
            ordered = sorted(set(nodes), key=order.__getitem__)
            pairs = [(s, t) for s in ordered for t in ordered if order[s] > order[t]]
        else:
            if not isinstance(candidates, (list, tuple)) or not candidates:
                raise UserConfigError(f"{key}.candidates", "must be 'all' or a non-empty list of {source, target}")
            pairs = []
            for i, edge in enumerate(candidates):
                where = f"{key}.candidates[{i}]"
                if not isinstance(edge, Mapping) or set(edge) != {"source", "target"}:
                    raise UserConfigError(where, f"must be {{source: NODE, target: NODE}}, got {edge!r}")
                for end in ("source", "target"):
                    if edge[end] not in order:
                        raise UserConfigError(f"{where}.{end}", f"{edge[end]!r} is not a node of the base graph; "
                                                                f"nodes: {self.node_names}")
                if order[edge["source"]] <= order[edge["target"]]:
                    raise UserConfigError(where, f"feedback goes from a higher node to a lower one; "
                                                 f"{edge['source']} is not above {edge['target']}")
                pairs.append((edge["source"], edge["target"]))
            if len(set(pairs)) != len(pairs):
                raise UserConfigError(f"{key}.candidates", "lists an edge twice")
        if not pairs:
            raise UserConfigError(f"{key}.nodes", "gives no higher->lower pair: list at least two nodes")
        max_edges = spec.get("max_edges", len(pairs))
        if not isinstance(max_edges, int) or isinstance(max_edges, bool) or max_edges < 0:
            raise UserConfigError(f"{key}.max_edges", f"must be an integer >= 0, got {max_edges!r}")
        threshold = spec.get("threshold", 0.5)
        if not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
            raise UserConfigError(f"{key}.threshold", f"must be in (0, 1), got {threshold!r}")
        self.edge_candidates = pairs
        self.max_edges = max_edges
        self.threshold = float(threshold)

    def _parse_training(self, spec: Any, key: str) -> None:
        self.training: dict[str, Knob] = {}
        if spec is None:
            return
        if not isinstance(spec, Mapping):
            raise UserConfigError(key, f"must be a mapping, got {spec!r}")
        for name, value in spec.items():
            if name not in TRAINING_KEYS:
                raise UserConfigError(f"{key}.{name}", f"unknown training hyperparameter; known: "
                                                       f"{sorted(TRAINING_KEYS)}")
            knob = parse_knob(f"train.{name}", value, f"{key}.{name}")
            if knob.kind == "tied":
                raise UserConfigError(f"{key}.{name}", "tied_to is only for cell knobs")
            if name == "batch_size":
                vals = [knob.value] if knob.kind == "const" else list(knob.choices) if knob.kind == "choice" \
                    else [knob.low, knob.high]
                if knob.kind == "float" or any(not isinstance(v, int) or isinstance(v, bool) or v < 1
                                               for v in vals):
                    raise UserConfigError(f"{key}.{name}", "must be positive integers")
            self.training[name] = knob

    # --------------------------------------------------------------------------------------- sampling
    def knobs(self) -> list[Knob]:
        """Every sampled knob (all branches), in a fixed order."""
        out = [k for k in [self.cell_type_knob] if k is not None and k.sampled]
        for branch in self.branches.values():
            out.extend(k for k in branch.values() if k.sampled)
        if self.edge_candidates is not None:
            out.extend(Knob(edge_name(s, t), "float", low=0.0, high=1.0) for s, t in self.edge_candidates)
        out.extend(k for k in self.training.values() if k.sampled)
        return out

    def sample(self, trial: Any) -> Point:
        """Sample a point with an Optuna trial (define-by-run: only the picked branch's knobs are suggested)."""
        return self._resolve(_suggest(trial))

    def point_from_params(self, params: Mapping[str, Any]) -> Point:
        """The point a finished trial trained, rebuilt from its stored parameters."""
        return self._resolve(_lookup(params))

    def _resolve(self, get: Getter) -> Point:
        def value(knob: Knob) -> Any:
            return knob.value if knob.kind == "const" else get(knob)

        cell_type = None
        options: dict[str, Any] = {}
        if self.cell_type_knob is not None:
            cell_type = value(self.cell_type_knob)
            branch = self.branches[cell_type]
            for option, knob in branch.items():
                if knob.kind != "tied":
                    options[option] = value(knob)
            for option, knob in branch.items():
                if knob.kind == "tied":
                    options[option] = knob.factor * options[knob.tied_to]
        edges = None
        edge_values: dict[str, float] = {}
        if self.edge_candidates is not None:
            for s, t in self.edge_candidates:
                edge_values[edge_name(s, t)] = float(get(Knob(edge_name(s, t), "float", low=0.0, high=1.0)))
            edges = self.pick_edges(edge_values)
        training = {name: value(knob) for name, knob in self.training.items()}
        return Point(cell_type, options, edges, edge_values, training)

    def pick_edges(self, edge_values: Mapping[str, float]) -> list[tuple[str, str]]:
        """The edges whose value passes the threshold; the ``max_edges`` largest when more pass."""
        assert self.edge_candidates is not None
        passing = [(edge_values[edge_name(s, t)], i) for i, (s, t) in enumerate(self.edge_candidates)
                   if edge_values[edge_name(s, t)] >= self.threshold]
        passing.sort(key=lambda vi: (-vi[0], vi[1]))
        keep = sorted(i for _, i in passing[: self.max_edges])
        return [self.edge_candidates[i] for i in keep]

    # ------------------------------------------------------------------------------------------ graphs
    def model_graph(self, point: Point, name: str | None = None) -> dict[str, Any]:
        """The self-contained model graph (a dict for YAML) of a point: the base graph with its cells and
        feedback edges replaced."""
        graph = copy.deepcopy(self.base_graph)
        if name is not None:
            graph["name"] = name
        if point.cell_type is not None:
            defaults = dict(graph.get("defaults") or {})
            defaults.pop("cell", None)
            if defaults:
                graph["defaults"] = defaults
            else:
                graph.pop("defaults", None)
            for node_name in self.cell_nodes:
                node = dict(graph["nodes"][node_name] or {})
                kept = {k: v for k, v in (node.get("cell") or {}).items() if k == "out_channels"}
                node["cell"] = {"type": point.cell_type, **kept, **point.cell_options}
                graph["nodes"][node_name] = node
        if point.edges is not None:
            graph["feedback"] = [{"source": s, "target": t} for s, t in point.edges]
        return graph

    def default_points(self) -> list[Point]:
        """One representative point per cell branch, built at config load so that a space whose cells cannot be
        built at all fails before the first trial. Each knob takes the cell's own default (the preset's value,
        else the class default) where the space allows it, else its first choice / low end; every candidate
        edge is in (up to max_edges)."""
        kinds = list(self.branches) or [None]
        points = []
        for kind in kinds:
            preset = None
            if kind is not None and "preset" in self.branches[kind]:
                preset = self.branches[kind]["preset"].value

            def get(knob: Knob, kind: str | None = kind, preset: str | None = preset) -> Any:
                if knob.name == "cell.type":
                    return kind
                if knob.name.startswith("edge."):
                    return 1.0
                default = _cell_default(kind, preset, knob.name.split(".", 1)[1]) if kind else _MISSING
                if knob.kind == "choice":
                    return default if default in knob.choices else knob.choices[0]
                ok = isinstance(default, (int, float)) and not isinstance(default, bool) and \
                    knob.low <= default <= knob.high
                return default if ok else knob.low
            points.append(self._resolve(get))
        return points

    # ---------------------------------------------------------------------------------------- the median
    def median_point(self, params_list: Sequence[Mapping[str, Any]], edge_sets: Sequence[Sequence[Sequence[str]]]
                     ) -> tuple[Point, dict[str, Any]]:
        """The paper's rule over several trials (best first): the median of each numeric knob, the majority of
        each switch/choice and of each edge's inclusion. Ties go to the value of the better trial.

        Numeric knobs sampled from a list (kernel sizes) or as integers take the lower median, so the value is
        one the trials used; continuous knobs take the plain median. The cell type is voted first; the knobs of
        that type are then taken over the trials that used it. Returns the point and the chosen parameters.
        """
        if not params_list:
            raise ValueError("no trials to take the median of")
        chosen: dict[str, Any] = {}

        def vote(values: list[Any]) -> Any:
            counts = Counter(repr(v) for v in values)
            top = max(counts.values())
            return next(v for v in values if counts[repr(v)] == top)  # values are best-first: ties -> better

        def combine(knob: Knob, values: list[Any]) -> Any:
            if knob.numeric and knob.kind == "float":
                return float(statistics.median(values))
            if knob.numeric:
                return statistics.median_low(values)
            return vote(values)

        group = list(params_list)
        if self.cell_type_knob is not None and self.cell_type_knob.sampled:
            kind = vote([p["cell.type"] for p in group])
            chosen["cell.type"] = kind
            group = [p for p in group if p["cell.type"] == kind]
        for branch_kind, branch in self.branches.items():
            if "cell.type" in chosen and chosen["cell.type"] != branch_kind:
                continue
            for knob in branch.values():
                if knob.sampled:
                    chosen[knob.name] = combine(knob, [p[knob.name] for p in group])
        for knob in self.training.values():
            if knob.sampled:
                chosen[knob.name] = combine(knob, [p[knob.name] for p in params_list])
        no_edges = {edge_name(s, t): 0.0 for s, t in self.edge_candidates or []}  # edges are voted below
        point = self._resolve(_lookup({**no_edges, **chosen}))
        if self.edge_candidates is not None:
            n = len(edge_sets)
            sets = [{tuple(e) for e in edges} for edges in edge_sets]
            votes = {e: sum(e in s for s in sets) for e in self.edge_candidates}
            majority = [e for e in self.edge_candidates if votes[e] * 2 > n]
            majority.sort(key=lambda e: -votes[e])  # stable: candidate order among equal votes
            keep = set(majority[: self.max_edges])
            point.edges = [e for e in self.edge_candidates if e in keep]
            point.edge_values = {edge_name(s, t): votes[(s, t)] / n for s, t in self.edge_candidates}
            chosen["edges"] = [list(e) for e in point.edges]
        return point, chosen


_MISSING = object()


def _cell_default(kind: str, preset: str | None, option: str) -> Any:
    """The value a cell option has when the YAML does not set it: the preset's, else the class default."""
    if preset is not None and kind == "rgc":
        settings = RGC_PRESETS.get(preset)
        if isinstance(settings, Mapping):
            if option in settings:
                return settings[option]
        elif settings is not None and hasattr(settings, option):
            return getattr(settings, option)
    param = inspect.signature(CELLS[kind].__init__).parameters.get(option)
    return param.default if param is not None and param.default is not param.empty else _MISSING


def load_base_graph(base: str, key: str = "model.base") -> dict[str, Any]:
    """The base model graph: a YAML path, or a zoo name (``rgc_intermediate``), with ``extends`` resolved."""
    from convrnn.zoo import CONFIG_DIR

    path = Path(base)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / f"{base}.yaml"
        if not path.is_file():
            raise UserConfigError(key, f"{base!r} is neither a YAML file nor a zoo model name")
    if not path.is_file():
        raise UserConfigError(key, f"model graph not found: {path}")
    try:
        return load_yaml_graph(path)
    except ConfigError as exn:
        raise UserConfigError(key, str(exn)) from None
