"""Opening the stores every command uses (Optuna storage, MLflow tracking), with one-line errors.

A malformed URL, a missing driver, an unwritable directory or a missing study is a ConfigError naming the
option and the value; it never becomes a traceback or a retry loop. Passwords inside URLs join the redaction
policy, so the URL can be printed.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit

from autotune.errors import ConfigError
from autotune.secrets import register, scrub, url_password


def default_storage(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'optuna.db').resolve()}"


def default_mlflow_uri(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"


def register_url_secret(url: str) -> None:
    """`postgresql://user:PASSWORD@host/db` or `https://user:PASSWORD@host`: the password is a secret."""
    register([url_password(url)])


def local_path(url: str) -> Path | None:
    """The file a sqlite:/// or file: store lives in (or a bare path), else None (a server)."""
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0]) if url != "sqlite:///:memory:" else None
    if url.startswith("file:"):
        return Path(urlsplit(url).path)
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:").removeprefix("//"))
    return None if "://" in url else Path(url)


def probe_dir(folder: Path, option: str, shown: str) -> None:
    """Fail in milliseconds, with one line, where a store would retry for minutes: the folder must exist or be
    creatable, and accept a new file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".autotune-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(option, "", f"cannot write there ({exc.strerror or exc}: {exc.filename or folder})",
                          shown) from None


def probe_file(path: Path, option: str, shown: str) -> None:
    """A store kept in one file (sqlite, journal): its folder writable, the file (if any) a writable file."""
    probe_dir(path.parent, option, shown)
    if path.exists():
        if not path.is_file():
            raise ConfigError(option, "", f"the store path is not a file: {path}", shown)
        try:
            with path.open("ab"):
                pass
        except OSError as exc:
            raise ConfigError(option, "", f"the store file is not writable ({exc.strerror or exc})", shown) from None


def open_storage(url: str, option: str = "--storage", create: bool = True):
    """An Optuna storage for an RDB URL (sqlite:///, postgresql://...) or `journal:///path.log`.
    `create=False` (export, report, nightly's first look): a local store must exist, and is only read, so a
    read-only archive works and a mistyped --run-dir creates nothing."""
    register_url_secret(url)
    shown = scrub(url)
    path = local_path(url)
    if url in ("sqlite://", "sqlite:///:memory:") or "mode=memory" in url:
        raise ConfigError(option, "", "an in-memory storage loses the study when the process exits", shown)
    if path is not None and not create and not path.is_file():
        raise ConfigError(option, "", f"no Optuna storage at {path} (a wrong --run-dir or --storage?)", shown)
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        if create:
            probe_file(path, option, shown)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise ConfigError(option, "", "must be an RDB URL (sqlite:///path, postgresql://user@host/db) or "
                          "journal:///path.log", shown)
    if path is not None and create:
        probe_file(path, option, shown)
    from optuna.storages import RDBStorage
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        for attempt in range(6):
            try:
                with warnings.catch_warnings(), init_lock(url):
                    warnings.simplefilter("ignore")
                    return RDBStorage(url, engine_kwargs=_connect_timeout(url))
            except SQLAlchemyError as exc:  # workers starting together race to create the schema: retry that
                if attempt == 5 or not contention(exc):
                    raise
                time.sleep(0.3 + random.random())
        raise AssertionError("unreachable")
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigError(option, "", f"malformed or unsupported storage URL ({one_line(exc)})", shown) from None
    except ImportError as exc:
        hint = "; postgresql:// uses psycopg 3, postgresql+psycopg2:// psycopg2" if url.startswith("postgres") else ""
        raise ConfigError(option, "", f"the database driver is not installed (no module {missing_module(exc)!r}"
                          f"{hint})", shown) from None
    except SQLAlchemyError as exc:
        raise ConfigError(option, "", f"cannot open the storage ({one_line(exc)})", shown) from None


@contextlib.contextmanager
def init_lock(url: str):
    """Processes on this host that open one local store together (workers starting at once) take turns: the
    first creates the schema, the others then find it complete. A server-backed store has no lock here; its
    races are retried (`contention`)."""
    path = local_path(url)
    if path is None or not url.startswith(("sqlite:", "file:")):
        yield
        return
    import fcntl

    lock = path.parent / f".{path.name}.init.lock"
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def contention(exc: BaseException) -> bool:
    """A lost race between workers (schema or row created twice, a locked sqlite file): worth a retry."""
    text = f"{type(exc).__name__} {exc}".lower()
    # schema creation racing between processes shows as any of these until the winner's migration is done
    return any(s in text for s in ("database is locked", "unique constraint", "integrityerror", "already exists",
                                   "duplicate key", "duplicate column", "no such table", "deadlock"))


def _connect_timeout(url: str) -> dict:
    """A database server that does not answer fails in seconds (psycopg2's default waits forever)."""
    return {"connect_args": {"connect_timeout": 10}} if url.startswith("postgresql") else {}


def load_study(name: str, url: str, option: str = "--storage"):
    """An existing study, or ConfigError naming it (with the studies the storage does hold). Reads only."""
    import optuna

    path = local_path(url)
    if path is not None and "://" in url and not path.is_file():
        raise ConfigError(option, "", f"no study {name!r}: there is no Optuna storage at {path} (a wrong --run-dir "
                          "or --storage?)", show_value=False)
    storage = open_storage(url, option, create=False)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
        have = f"; it holds {', '.join(names[:10])}" if names else "; it holds none"
        raise ConfigError(scrub(url), "--study", f"no study named {name!r} in this storage{have}",
                          show_value=False) from None
    except Exception as exc:  # a damaged or foreign database
        raise ConfigError(scrub(url), "--study", f"cannot read study {name!r} ({one_line(exc)})",
                          show_value=False) from None


def check_mlflow_uri(uri: str, option: str = "--mlflow-uri") -> None:
    """Before any run is created: a local MLflow store must be writable (MLflow itself would retry for minutes)."""
    register_url_secret(uri)
    path = local_path(uri)
    if path is not None:
        (probe_file if uri.startswith("sqlite:") else probe_dir)(path, option, scrub(uri))


def missing_module(exc: BaseException) -> str:
    """The module an ImportError is about, looked for down the cause chain (Optuna re-raises SQLAlchemy's)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ImportError) and seen.name:
            return seen.name
        seen = seen.__cause__ or seen.__context__
    return one_line(exc)


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, scrubbed and bounded: what a one-line error quotes of a cause."""
    text = str(exc).strip().splitlines()
    return scrub(f"{type(exc).__name__}: {text[0] if text else ''}")[:300]
