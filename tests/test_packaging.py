"""The wheel is a working install: it carries the zoo, and every command is an entry point that runs outside the
repository.

The wheel is built from this checkout (``pip wheel --no-build-isolation``: no download), installed without its
dependencies into a fresh virtual environment whose dependencies come from the test's own environment (a path in a
``.pth`` file, so none of that environment's editable-install hooks load), and used from a folder outside the repo.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _entry_points() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict(line.replace(" ", "").split("=", 1) for line in lines)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the fresh environment's python)."""
    tmp = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp / "dist"), str(REPO)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((tmp / "dist").glob("convrnn-*.whl"))
    env = tmp / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return wheel, python


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(WANDB_MODE="disabled", OMP_NUM_THREADS="1", PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}")
    return subprocess.run([str(python), *args] if not args[0].startswith("convrnn-") else [
        str(python.parent / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_carries_every_zoo_yaml(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    zoo = sorted((REPO / "configs" / "models").rglob("*.yaml"))
    assert len(zoo) >= 23  # 21 models + 2 backbones
    for path in zoo:
        inside = "convrnn/configs/models/" + path.relative_to(REPO / "configs" / "models").as_posix()
        assert inside in names, f"{inside} is not in the wheel"
    assert "convrnn/configs/demo.yaml" in names


def test_the_installed_package_builds_zoo_models_outside_the_repo(installed: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    _, python = installed
    code = ("import convrnn, torch; assert 'site-packages' in convrnn.__file__, convrnn.__file__; "
            "names = convrnn.list_models(); assert len(names) == 21, names; "
            "m = convrnn.build_model('rgc_intermediate', input_size=64, width_multiplier=0.125, num_classes=5); "
            "print(m(torch.zeros(1, 3, 64, 64)).logits.shape)")
    done = _run(python, "-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "torch.Size([17, 1, 5])"


def test_every_command_is_an_installed_entry_point(installed: tuple[Path, Path], tmp_path: Path) -> None:
    _, python = installed
    scripts = _entry_points()
    assert {"convrnn-train", "convrnn-fit-neural", "convrnn-make-shards", "convrnn-search", "convrnn-demo",
            "convrnn-import-release"} <= set(scripts)
    for name in scripts:
        assert (python.parent / name).is_file(), f"{name} was not installed"
        done = _run(python, name, "--help", cwd=tmp_path)
        assert done.returncode == 0, f"{name} --help: {done.stderr[-2000:]}"
        assert "usage" in done.stdout.lower(), name


def test_installed_train_runs_the_packaged_demo_config(installed: tuple[Path, Path], tmp_path: Path) -> None:
    """convrnn-train with the demo config that ships in the wheel, from an empty folder (a few steps)."""
    _, python = installed
    config = _run(python, "-c", "from convrnn.zoo import DEMO_CONFIG; print(DEMO_CONFIG)", cwd=tmp_path)
    demo = Path(config.stdout.strip())
    assert demo.is_file() and "site-packages" in str(demo)
    done = _run(python, "convrnn-train", "fit", "--config", str(demo), "--trainer.max_steps", "2",
                "--data.synthetic.train_per_object_per_level", "1", "--data.synthetic.val_per_object_per_level", "1",
                "--run.progress_bar", "none", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs" / "demo" / "checkpoints" / "last.ckpt").is_file()
