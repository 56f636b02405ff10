"""Where a study lives (SQLite, PostgreSQL, a journal file), and keeping the database password secret.

Storage URLs:

- ``sqlite:///path/study.db``: the default (``<run folder>/study.db``): one machine, a few workers.
- ``postgresql://user@host:5432/db``: many workers on many machines. The password comes from ``PGPASSWORD``
  or PostgreSQL's password file (``~/.pgpass`` or ``PGPASSFILE``), which libpq reads itself; that is the way to
  run on a cluster. A password written in the URL is accepted too, but it is taken out of the URL at once and
  handed on in ``PGPASSWORD`` only (environment, not argv: ``ps`` shows argv), so it is never printed, logged,
  or written into any file, trial attribute or wandb config; URLs are shown as ``postgresql://user:***@host/db``.
- ``journal:///path/study.log`` (or ``journal:relative/path.log``): Optuna's journal file backend, for a shared
  file system without a database. It has no heartbeat, so a killed worker's trial stays RUNNING (use RDB
  storages where workers may be killed).

``CONVRNN_SEARCH_STORAGE`` in the environment sets the URL when ``--storage`` is not given; the trial
subprocesses get the (password-free) URL the same way.
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings
from pathlib import Path
from typing import Any

import optuna

from convrnn.errors import UserError

STORAGE_ENV = "CONVRNN_SEARCH_STORAGE"
JOURNAL_PREFIX = "journal:"
MASK = "***"


def _is_rdb_url(url: str) -> bool:
    return "://" in url and not url.startswith(JOURNAL_PREFIX)


def _parse(url: str) -> Any:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except ArgumentError:
        raise UserError(f"not a storage URL: {mask_url(url)}") from None


def has_password(url: str) -> bool:
    """True if the URL carries a password (in its user part or as a ``password=`` query parameter)."""
    if not _is_rdb_url(url):
        return False
    parsed = _parse(url)
    return bool(parsed.password) or "password" in parsed.query


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to print and log)."""
    if not _is_rdb_url(url):
        return url
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # unparsable: show only the scheme, never the rest
        return url.split("://", 1)[0] + "://" + MASK
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": MASK})
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", MASK)


def take_password(url: str) -> str:
    """Remove the password from a PostgreSQL URL and put it in ``PGPASSWORD`` (this process and its children).

    Returns the URL without the password; everything after this point handles only that URL.
    """
    if not has_password(url):
        return url
    parsed = _parse(url)
    password = parsed.password or parsed.query.get("password")
    if not parsed.get_backend_name().startswith("postgresql"):
        raise UserError(f"{mask_url(url)}: a password in the URL is only supported for PostgreSQL; use the "
                        "database's own credential files")
    os.environ["PGPASSWORD"] = str(password)
    from sqlalchemy.engine import URL

    query = {k: v for k, v in parsed.query.items() if k != "password"}
    clean = URL.create(parsed.drivername, username=parsed.username, password=None, host=parsed.host,
                       port=parsed.port, database=parsed.database, query=query)
    text = clean.render_as_string(hide_password=False)
    if has_password(text):  # never hand on a URL that still holds the secret
        raise UserError(f"could not remove the password from {mask_url(url)}")
    return text


def resolve_url(flag: str | None, configured: str | None, run_dir: Path, create: bool = True) -> str:
    """``--storage``, else ``CONVRNN_SEARCH_STORAGE``, else ``study.storage``, else SQLite in the run folder
    (created when ``create``, else it must exist); its password (if any) moved into ``PGPASSWORD``."""
    url = flag or os.environ.get(STORAGE_ENV) or configured
    if not url:
        db = (run_dir / "study.db").resolve()
        if not create and not db.is_file():
            raise UserError(f"no study database {db}: start the study with `search.py run` (or pass --storage)")
        run_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{db}"
    return take_password(url)


def _postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps ``postgresql://`` to psycopg 3; use psycopg2 when only that is installed."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def journal_path(url: str) -> Path:
    rest = url[len(JOURNAL_PREFIX):]
    if rest.startswith("//"):
        rest = rest[2:]
    if not rest:
        raise UserError(f"{url}: a journal storage needs a file path (journal:///path/study.log)")
    return Path(rest)


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 retry_failed: int = 0) -> optuna.storages.BaseStorage:
    """An Optuna storage for a (password-free) URL; RDB storages get the heartbeat when it is given.

    ``retry_failed`` > 0: a trial whose worker died (no heartbeat for ``grace_period`` s) is re-queued with the
    same parameters, at most that many times (``RetryHeartbeatStaleTrialCallback``, which replaces the
    deprecated ``failed_trial_callback``).
    """
    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

        path = journal_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    if not _is_rdb_url(url):
        raise UserError(f"unknown storage {mask_url(url)!r}: use sqlite:///FILE, postgresql://USER@HOST/DB or "
                        "journal:///FILE")
    kwargs: dict[str, Any] = {}
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 120}  # several workers share one file: wait for the lock
    else:
        engine_kwargs["pool_pre_ping"] = True
    if heartbeat_interval:
        kwargs.update(heartbeat_interval=heartbeat_interval, grace_period=grace_period)
        if retry_failed:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                kwargs["heartbeat_stale_trial_callback"] = optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=retry_failed)
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeats have been "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(_postgres_driver(url), engine_kwargs=engine_kwargs, **kwargs)
        except (IntegrityError, ProgrammingError):
            # several workers creating the tables of a fresh database at once: the losers retry
            if attempt == 4:
                raise UserError(f"cannot create the study tables in {mask_url(url)}") from None
            time.sleep(0.5 * (attempt + 1))
        except Exception as exn:  # connection refused, bad credentials, missing driver: say where, not the secret
            raise UserError(f"cannot open the study storage {mask_url(url)}: {type(exn).__name__}: "
                            f"{_scrub(str(exn))}") from None
    raise AssertionError("unreachable")


def _scrub(message: str) -> str:
    """Drop any password that a driver message might echo (it never should; belt and braces)."""
    secret = os.environ.get("PGPASSWORD")
    text = message.splitlines()[0] if message else message
    return text.replace(secret, MASK) if secret else text
