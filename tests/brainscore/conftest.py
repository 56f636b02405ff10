"""Fixtures for the Brain-Score tests: local synthetic V4/IT recordings and fit_neural.py's scores on them.

Brain-Score vision cannot live in the main environment (numpy<2, xarray<2022.6), so these tests run in
``.venv-brainscore`` (``make test-brainscore``). The recordings and ``fit_neural.py``'s scores are produced by the
main environment's Python (``.venv``, or ``$CONVRNN_MAIN_PYTHON``), running the real command, so the comparison is
with what users run. Brain-Score's caches go to a temporary folder and its dependency installer is off; nothing is
downloaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

_CACHE = tempfile.mkdtemp(prefix="convrnn-brainscore-tests-")
os.environ["RESULTCACHING_HOME"] = str(Path(_CACHE) / "result_caching")  # never reuse a ceiling across runs
os.environ["BRAINSCORE_HOME"] = str(Path(_CACHE) / "brain-score")
os.environ["BS_INSTALL_DEPENDENCIES"] = "no"  # Brain-Score would pip-install a plugin's requirements.txt
os.environ["BRAINSCORE_SKIP_MEMORY_CHECK"] = "1"  # its memory probe expects Brain-Score's own activations wrapper

REPO = Path(__file__).resolve().parents[2]
#: the synthetic subset scored here: 192 stimuli, 10 repetitions, 4 bins (70-110 ms: image on, then blank)
N_BINS = 4
N_REPS = 10
TEACHER = dict(input_size=64, width_multiplier=0.125, seed=0)  # = convrnn.neural.synthetic's default teacher

_MAKE_DATA = f"""
import sys
from pathlib import Path
from convrnn.neural import load_assembly, save_assembly
from convrnn.neural.synthetic import SyntheticConfig, generate
root = Path(sys.argv[1])
rec = generate(root / "synthetic", SyntheticConfig(images_per_object_per_level=1))
assembly = load_assembly(rec.assembly_path)
bins = sorted(set(assembly["time_bin_start"].values.tolist()))[:{N_BINS}]
reps = list(range({N_REPS}))
keep = assembly.isel(time_bin=[i for i, s in enumerate(assembly["time_bin_start"].values) if s in bins],
                     presentation=[i for i, r in enumerate(assembly["repetition"].values) if r in reps])
save_assembly(keep, root / "subset.nc", identifier="convrnn.SyntheticSubset", stimulus_set_identifier="syn")
print(rec.stimuli_csv)
"""


def main_python() -> Path:
    """The main environment's interpreter (where convrnn's own requirements are installed)."""
    return Path(os.environ.get("CONVRNN_MAIN_PYTHON") or REPO / ".venv" / "bin" / "python")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Synthetic recordings (a 4-bin, 10-repetition subset, as a brainio .nc) and fit_neural.py's shared-map scores
    of the teacher's architecture and weights (``rgc_intermediate``, 64 px, width 0.125, seed 0) at conv5/conv8."""
    python = main_python()
    if not python.is_file():
        pytest.skip(f"needs the main environment's Python at {python} (make install, or set CONVRNN_MAIN_PYTHON)")
    root = tmp_path_factory.mktemp("recordings")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    made = subprocess.run([str(python), "-c", _MAKE_DATA, str(root)], capture_output=True, text=True, env=env,
                          cwd=REPO)
    assert made.returncode == 0, made.stderr[-3000:]
    stimuli_csv = Path(made.stdout.strip().splitlines()[-1])
    fit = root / "fit"
    run = subprocess.run([str(python), str(REPO / "scripts" / "fit_neural.py"), "--data", str(root / "subset.nc"),
                          "--stimuli", str(stimuli_csv), "--model", "rgc_intermediate", "--input-size", "64",
                          "--width", "0.125", "--seed", "0", "--layers", "conv5", "conv8", "--regions", "V4", "IT",
                          "--shared", "--no-progress", "--out", str(fit)],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    per_bin = root / "fit_per_bin"  # fit_neural's default: one map per bin (Brain-Score's static benchmarks)
    run = subprocess.run([str(python), str(REPO / "scripts" / "fit_neural.py"), "--data", str(root / "subset.nc"),
                          "--stimuli", str(stimuli_csv), "--model", "rgc_intermediate", "--input-size", "64",
                          "--width", "0.125", "--seed", "0", "--layers", "conv5", "--regions", "V4",
                          "--no-progress", "--out", str(per_bin)],
                         capture_output=True, text=True, env=env, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    return dict(assembly=root / "subset.nc", stimuli_csv=stimuli_csv, scores=fit / "scores.csv",
                best_layers=fit / "best_layers.csv", per_bin_scores=per_bin / "scores.csv", root=root)


@pytest.fixture(scope="session")
def v4_benchmark(recordings: dict[str, Path]):
    """Brain-Score's NeuralBenchmark (spantime_pls, temporal split-half ceiling) on the recordings' V4 sites; the
    splits are stratified by category, as fit_neural.py does for this small stimulus set."""
    from convrnn.brainscore.benchmark import load_local_assembly, local_benchmark

    assembly = load_local_assembly(recordings["assembly"], recordings["stimuli_csv"])
    return local_benchmark(assembly, "V4", stratification_coord="category_name", identifier="convrnn.test.V4")


def pytest_configure(config: pytest.Config) -> None:
    # Brain-Score's marker for slow plugin tests; a generated plugin's test.py uses it
    config.addinivalue_line("markers", "travis_slow: Brain-Score's marker for slow plugin tests")


def pytest_report_header() -> str:
    return f"brainscore tests: main environment python {main_python()} ({sys.executable} runs the tests)"
