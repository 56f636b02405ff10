"""Loggers: CSV + TensorBoard always; wandb auto → online with a key, offline without, off when disabled."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from convrnn.training.loggers import build_loggers, resolve_wandb_mode, wandb_api_key_configured


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A HOME without netrc and an environment without W&B variables."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_auto_is_offline_without_credentials(no_credentials: Path) -> None:
    assert not wandb_api_key_configured()
    assert resolve_wandb_mode("auto") == "offline"
    assert resolve_wandb_mode("online") == "offline"  # asked for online, but it could not log in


def test_auto_is_online_with_a_key_in_env_or_netrc(no_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (no_credentials / ".netrc").write_text("machine api.wandb.ai login user password " + "x" * 40 + "\n")
    (no_credentials / ".netrc").chmod(0o600)
    assert wandb_api_key_configured() and resolve_wandb_mode("auto") == "online"
    (no_credentials / ".netrc").write_text("machine example.org login user password secret\n")
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"


def test_env_mode_is_honoured(no_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("online") == "disabled"  # disabled in the env always wins
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode("auto") == "offline"
    assert resolve_wandb_mode("disabled") == "disabled"


def test_build_loggers_disabled(no_credentials: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    loggers = build_loggers(tmp_path / "run", "auto")
    assert [type(lg) for lg in loggers] == [TensorBoardLogger, CSVLogger]
    assert Path(loggers[0].log_dir) == tmp_path / "run" / "tb" / "version_0"


def test_offline_wandb_logs_without_network(no_credentials: Path, tmp_path: Path) -> None:
    """With no key wandb runs offline and writes its run folder; nothing needs the network."""
    loggers = build_loggers(tmp_path / "run", "auto", project="convrnn-test", name="offline-check")
    wandb_logger = loggers[-1]
    assert isinstance(wandb_logger, WandbLogger)
    try:
        wandb_logger.log_metrics({"val/top1": 0.5}, step=1)
        run_dirs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
        assert run_dirs, "no offline run folder was written"
    finally:
        import wandb

        wandb.finish()


@pytest.mark.slow
def test_online_without_network_falls_back_to_offline(tmp_path: Path) -> None:
    """A key is configured but the server is unreachable (a closed loopback port): the run logs offline."""
    import os
    import subprocess
    import sys

    code = (
        "from convrnn.training.loggers import build_loggers\n"
        "import wandb\n"
        f"lg = build_loggers({str(tmp_path / 'run')!r}, 'auto')[-1]\n"
        "assert lg._wandb_init['mode'] == 'online'\n"
        "lg.log_metrics({'val/top1': 0.5}, step=1)\n"
        "print('MODE', lg.experiment.settings.mode)\n"
        "wandb.finish()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({"HOME": str(tmp_path), "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9",
                "WANDB_INIT_TIMEOUT": "10"})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "MODE offline" in out.stdout
    assert "could not start online" in out.stderr
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
