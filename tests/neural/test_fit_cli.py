"""``convrnn-fit-neural``'s parser (convrnn.neural.cli) and the one mapping -> FitConfig parser it shares with the
search's neural objective (convrnn.neural.config.fit_config_from_mapping): no model runs here."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import torch
import yaml

from convrnn.errors import UserConfigError
from convrnn.neural import cli
from convrnn.neural.config import CeilingMissing, Convention, FitConfig, fit_config_from_mapping
from convrnn.neural.metrics import CEILING_MISSING, CONVENTIONS
from convrnn.neural.synthetic import SyntheticConfig
from convrnn.search.objectives import check_neural_spec, neural_score
from convrnn.threads import torch_threads


def _config(argv: list[str]) -> FitConfig:
    return cli.config_from_args(cli.build_parser().parse_args(argv))


def test_yaml_sets_every_field_including_the_nested_synthetic_config(tmp_path: Path) -> None:
    """The reviewer's case: ``synthetic:`` is a FitConfig field, so a YAML mapping of SyntheticConfig fields works
    (it used to be refused as "Option 'synthetic.images_per_object_per_level' is not accepted"), as do the other
    non-scalar fields; flags after --config override single nested keys."""
    out = tmp_path / "out"
    path = tmp_path / "scoring.yaml"
    path.write_text(yaml.safe_dump({
        "out": str(out), "layers": ["conv5", "conv6"], "regions": ["V4", "cIT+aIT"], "threads": 0,
        "synthetic": {"images_per_object_per_level": 1, "levels": [0, 3], "sites": {"V4": 4, "pIT": 2},
                      "ceilings": {"V4": 0.8, "IT": 0.7}, "repetitions": 4},
        "mapping": "shared", "ceiling_missing": "drop_stimulus", "width": 0.25}))
    expected = FitConfig(out=out, layers=["conv5", "conv6"], regions=["V4", "cIT+aIT"], threads=0,
                         synthetic=SyntheticConfig(images_per_object_per_level=1, levels=(0, 3),
                                                   sites={"V4": 4, "pIT": 2}, ceilings={"V4": 0.8, "IT": 0.7},
                                                   repetitions=4),
                         mapping="shared", ceiling_missing="drop_stimulus", width=0.25)
    assert _config(["--config", str(path)]) == expected
    assert fit_config_from_mapping(yaml.safe_load(path.read_text())) == expected
    overridden = _config(["--config", str(path), "--synthetic.repetitions", "6", "--synthetic-images", "3"])
    assert overridden.synthetic == dataclasses.replace(expected.synthetic, repetitions=6,
                                                       images_per_object_per_level=3)
    # the old flag alone: the default config at that size
    assert _config(["--out", str(out), "--synthetic-images=4"]).synthetic == SyntheticConfig(
        images_per_object_per_level=4)
    assert _config(["--out", str(out)]).synthetic is None


def test_choices_are_literal_types_checked_by_jsonargparse(capsys: pytest.CaptureFixture[str]) -> None:
    hints = typing.get_type_hints(FitConfig)
    assert set(typing.get_args(Convention)) == set(CONVENTIONS)
    assert set(typing.get_args(CeilingMissing)) == set(CEILING_MISSING)
    for name in ("regression", "mapping", "convention", "splits"):
        assert typing.get_origin(hints[name]) is typing.Literal, name
    assert not hasattr(cli, "_CHOICES")
    for flag, value in (("--regression", "lasso"), ("--convention", "r"), ("--splits", "kfold"),
                        ("--mapping", "both"), ("--ceiling-missing", "drop_all")):
        with pytest.raises(SystemExit) as exc:
            cli.build_parser().parse_args(["--out", "o", flag, value])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert flag.lstrip("-").replace("-", "_") in err and value in err, err
    assert _config(["--out", "o", "--ceiling-missing", "drop-neuroid"]).ceiling_missing == "drop_neuroid"


def test_print_config_is_a_loadable_fitconfig(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--print_config prints FitConfig's fields and nothing else (not the aliases, not -v), and reading it back with
    --config (or the search's parser) gives the same FitConfig."""
    argv = ["--out", str(tmp_path / "out"), "--shared", "--synthetic-images", "1", "--layers", "conv5,conv6",
            "--threads", "0", "--ceiling-missing", "drop-stimulus", "-v"]
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args([*argv, "--print_config"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    data = yaml.safe_load(printed)
    assert list(data) == [f.name for f in dataclasses.fields(FitConfig)]
    assert data["mapping"] == "shared" and data["threads"] == 0
    path = tmp_path / "printed.yaml"
    path.write_text(printed)
    config = _config(argv)
    assert _config(["--config", str(path)]) == config
    assert fit_config_from_mapping(data) == config
    assert config.layers == ["conv5", "conv6"] and config.ceiling_missing == "drop_stimulus"
    parser = cli.build_parser()
    parser.parse_args(argv)
    assert parser.verbose  # -v is read, kept off the config


def test_threads_zero_is_kept_and_means_torchs_default() -> None:
    config = _config(["--out", "o", "--threads", "0", "--model-threads", "0"])
    assert config.threads == 0 and config.model_threads == 0
    assert _config(["--out", "o"]).threads == 1
    before = torch.get_num_threads()
    with torch_threads(0):
        assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_weights_per_bin_is_a_deprecated_alias(capsys: pytest.CaptureFixture[str]) -> None:
    assert _config(["--out", "o", "--weights-per-bin"]).mapping == "per_bin"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--weights-per-bin is deprecated" in err and "--mapping" in err
    assert _config(["--out", "o", "--shared"]).mapping == "shared"
    assert capsys.readouterr().err == ""
    assert "--weights-per-bin" not in cli.FIELD_HELP["mapping"]


@pytest.mark.parametrize("alias", ["--shared", "--weights-per-bin", "--weights-per-bin=x"])
def test_mapping_and_an_alias_together_are_refused(alias: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--mapping X --shared`` would otherwise let the last flag win silently."""
    for argv in (["--mapping", "per_bin", alias], [alias.split("=")[0], "--mapping=shared"]):
        with pytest.raises(SystemExit) as exc:
            cli.build_parser().parse_args(["--out", "o", *argv])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--mapping and " in err and alias.split("=")[0] in err and "give one" in err, err


@pytest.mark.parametrize(("values", "key", "message"), [
    ({"n_components": "many"}, "n_components", "expected int, got 'many'"),
    ({"regression": "lasso"}, "regression", "expected one of 'pls', 'ridgecv', got 'lasso'"),
    ({"layers": 5}, "layers", "got 5"),
    ({"n_splits": 2.5}, "n_splits", "got 2.5"),
    ({"no_such": 1}, "no_such", "not a FitConfig field"),
    ({"synthetic": {"repetitions": "x"}}, "synthetic.repetitions", "expected int, got 'x'"),
    ({"synthetic": {"no_such": 1}}, "synthetic.no_such", "not a SyntheticConfig field"),
    ({"synthetic": {"repetitions": 1}}, "synthetic", "repetitions must be >= 2"),
    ({"synthetic": [1]}, "synthetic", "must be a mapping"),
])
def test_mapping_errors_name_the_key(values: dict, key: str, message: str) -> None:
    with pytest.raises(UserConfigError) as exc:
        fit_config_from_mapping({"out": "o", **values}, where="neural.fit.")
    assert exc.value.key == f"neural.fit.{key}"
    assert message in str(exc.value)
    with pytest.raises(UserConfigError, match="out: required"):
        fit_config_from_mapping({})


def test_search_objective_uses_the_same_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """neural.fit / neural.synthetic are checked (names and types) before any trial, and neural_score builds its
    FitConfig the same way."""
    for spec, key, message in (
        ({"fit": {"n_components": "x"}}, "neural.fit.n_components", "expected int"),
        ({"fit": {"mapping": "both"}}, "neural.fit.mapping", "'both'"),
        ({"fit": {"out": "x"}}, "neural.fit.out", "unknown fit option"),
        ({"fit": {"zz": 1}}, "neural.fit.zz", "unknown fit option"),
        ({"synthetic": {"levels": "x"}}, "neural.synthetic.levels", "got 'x'"),
        ({"synthetic": {"zz": 1}}, "neural.synthetic.zz", "not a SyntheticConfig field"),
    ):
        with pytest.raises(UserConfigError) as exc:
            check_neural_spec(spec)
        assert exc.value.key == key and message in str(exc.value), (spec, str(exc.value))
    check_neural_spec({"synthetic": {"images_per_object_per_level": 1}, "fit": {"layers": ["conv5"], "threads": 0}})

    seen: list[FitConfig] = []

    def fake_run(config: FitConfig) -> None:
        seen.append(config)
        raise KeyboardInterrupt

    import convrnn.neural.pipeline as pipeline

    monkeypatch.setattr(pipeline, "run", fake_run)
    with pytest.raises(KeyboardInterrupt):
        neural_score(tmp_path / "last.ckpt", tmp_path / "neural", {"synthetic": {"levels": [0, 6]},
                                                                   "fit": {"n_components": 3}}, tmp_path)
    assert seen == [FitConfig(out=tmp_path / "neural", model=str(tmp_path / "last.ckpt"), n_components=3,
                              synthetic=SyntheticConfig(levels=(0, 6)),
                              synthetic_dir=str(tmp_path / "neural_data"), progress=False)]


@pytest.mark.parametrize(("field", "flag"), [("mapping", "--mapping"), ("regression", "--regression"),
                                             ("splits", "--splits")])
def test_a_fitconfig_built_in_python_has_its_choices_checked(field: str, flag: str) -> None:
    """Python callers bypass jsonargparse; the pre-flight check names the flag and lists the Literal's choices."""
    from convrnn.errors import UserError
    from convrnn.neural.checks import check_flags

    with pytest.raises(UserError, match=f"^{flag}: unknown 'bogus'; use one of"):
        check_flags(FitConfig(out=Path("o"), **{field: "bogus"}))
    check_flags(FitConfig(out=Path("o")))
