"""An output folder that is safe to write: creatable, ours, one model's, one run at a time.

Every command that writes an ``--out`` folder claims it here. What a command writes there is
named in :mod:`depthscope.core.run_folder` (``depthscope analyze --out DIR`` writes ``run.json``,
``results/``, ``state/``, ``figures/``, ``summary.json`` and ``report.html`` into DIR, ``map``,
``prune``, ``compare``, ``export`` and ``lens train`` their own files; a training run writes a
whole model folder). Before anything is written or a model loads,
:meth:`OutputFolder.check` makes sure DIR can be created and written and holds nothing of what
the command writes that depthscope did not write (a user's own ``run.json`` is never
overwritten; a training folder must be new, empty or depthscope's). Once the model is known,
:meth:`OutputFolder.claim` binds DIR to it: results of two models are never mixed in one
directory. :meth:`OutputFolder.lock` keeps a second run off DIR while the first is working.
:func:`friendly_os_errors` turns a full disk or a read-only file system into one line with the fix.

Usage (what ``depthscope analyze`` does)::

    run_dir = OutputFolder(out)
    run_dir.check()                      # before loading the model: writes nothing
    with friendly_os_errors(out):
        lm = load_model(...)             # a model that fails to load leaves no directory behind
        with run_dir.lock(progress):
            notice = run_dir.claim(lm.fingerprint, lm.name, lm.identity.get("source"))
            ...

``depthscope plot DIR`` calls :meth:`OutputFolder.require_run` first.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from depthscope.core.atomic_files import atomic_write_json, read_json_object
from depthscope.core.errors import DepthscopeError
from depthscope.core.run_folder import (
    ANALYZE_OUTPUTS,
    LOCK,
    MARKER,
    TRAINING_FORMAT,
    RunFolder,
)


def _probe_writable(folder: Path) -> OSError | None:
    """Create and remove a scratch directory in ``folder``: what ``mkdir`` or a write would meet.

    ``os.access`` is not enough: it says yes to root on read-only mounts such as ``/sys``.
    """
    try:
        os.rmdir(tempfile.mkdtemp(dir=folder, prefix=".depthscope-probe-"))
    except OSError as exc:
        return exc
    return None


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor or ".")


class OutputFolder:
    """The ``--out`` folder of a command.

    ``outputs`` names what the command writes there (``*_OUTPUTS`` of
    :mod:`depthscope.core.run_folder`); ``None`` means the whole folder (a model folder a training
    run or ``prune --save`` writes), so anything already in it must be depthscope's. ``option``
    is the option that named the folder, as the messages say it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        outputs: tuple[str, ...] | None = ANALYZE_OUTPUTS,
        *,
        option: str = "--out",
    ) -> None:
        self.path = Path(path).expanduser()
        self.outputs = outputs
        self.option = option  # how the user named the folder, for the messages
        self._claimed_here = False  # this process wrote the marker (see _leave_no_trace)

    @property
    def folder(self) -> RunFolder:
        """The folder's paths (:mod:`depthscope.core.run_folder`)."""
        return RunFolder(self.path)

    @property
    def marker(self) -> Path:
        return self.folder.marker

    @property
    def lock_path(self) -> Path:
        return self.folder.lock

    # ------------------------------------------------------------------ checks before loading

    def check(self) -> None:
        """Refuse an ``--out`` that cannot be written or holds files depthscope did not write.

        Writes nothing (a scratch directory is created and removed to test writability).
        """
        path, opt = self.path, self.option
        if path.exists() and not path.is_dir():
            raise DepthscopeError(
                f"{opt} {path} is a file, not a directory; choose a directory (new or empty) "
                f"for the run's results"
            )
        if path.is_dir():
            problem = _probe_writable(path)
            if problem is not None:
                raise DepthscopeError(
                    f"{opt} {path} is not writable ({problem.strerror}); choose another {opt} "
                    f"or fix its permissions"
                )
            self._check_ownership()
            return
        base = _nearest_existing(path)
        if not base.is_dir():
            raise DepthscopeError(
                f"{opt} {path} cannot be created: {base} is a file, not a directory; choose "
                f"another {opt}"
            )
        problem = _probe_writable(base)
        if problem is not None:
            raise DepthscopeError(
                f"{opt} {path} cannot be created in {base} ({problem.strerror}); choose another "
                f"{opt} or fix the permissions of {base}"
            )

    def present(self) -> list[str]:
        """What of the command's outputs the folder already holds (sorted names)."""
        if not self.path.is_dir():
            return []
        if self.outputs is None:
            return sorted(p.name for p in self.path.iterdir() if p.name not in (MARKER, LOCK))
        return [name for name in self.outputs if os.path.lexists(self.path / name)]

    def _check_ownership(self) -> None:
        opt = self.option
        present = self.present()
        if not present or self.belongs_to_depthscope():
            return
        listed = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        if "config.json" in present:
            what = f"holds another model ({listed}), which depthscope did not write"
        elif self.outputs is None:  # a model folder: anything in it counts
            what = f"holds files depthscope did not write ({listed})"
        else:
            what = f"already holds {listed} that depthscope did not write"
        raise DepthscopeError(
            f"{opt} {self.path} {what}; choose a new or empty directory for {opt} (nothing was "
            f"changed)"
        )

    def belongs_to_depthscope(self) -> bool:
        """DIR carries depthscope's marker, or a ``run.json`` or ``training.json`` it wrote."""
        marker = read_json_object(self.marker)
        if marker is not None and marker.get("depthscope_run"):
            return True
        if self.folder.read_record() is not None:
            return True
        training = read_json_object(self.folder.training)
        return training is not None and training.get("format") == TRAINING_FORMAT

    def require_run(self) -> list[Path]:
        """For commands that read a run (``plot``): DIR is a depthscope run with results.

        Returns the result files; refuses a missing directory, a file, a folder depthscope did
        not write and a run without results, so nothing is drawn into someone else's folder.
        """
        path = self.path
        if not path.exists():
            raise DepthscopeError(
                f"run directory {path} does not exist; pass the --out of an analyze run"
            )
        if not path.is_dir():
            raise DepthscopeError(
                f"{path} is a file, not a run directory; pass the --out of an analyze run"
            )
        if not self.belongs_to_depthscope():
            raise DepthscopeError(
                f"{path} is not a depthscope run directory (no run.json written by depthscope); "
                f"pass the --out of an analyze run"
            )
        results = self.folder.result_files()
        if not results:
            raise DepthscopeError(
                f"{path} holds no results yet; run `depthscope analyze --out {path}` first"
            )
        return results

    # ------------------------------------------------------------------ one model per directory

    def owner(self) -> dict | None:
        """``{"name", "source", "fingerprint"}`` of the model DIR belongs to, if any.

        A directory written before markers existed is identified by its ``run.json``.
        """
        marker = read_json_object(self.marker)
        if marker is not None and marker.get("depthscope_run"):
            return {k: marker.get(k) for k in ("name", "source", "fingerprint")}
        record = self.folder.read_record()
        if record is not None and isinstance(record.model, dict):
            return record.owner()
        return None

    def claim(
        self,
        fingerprint: str,
        name: str,
        source: str | None = None,
        *,
        suggestion: str | None = None,
    ) -> str | None:
        """Bind DIR to a model; refuse a directory holding another model's results.

        The same model (same source) with changed files or dtype keeps the directory: its
        results are recomputed (fingerprints differ) and the returned notice says so. Returns
        None when nothing needs saying. ``suggestion`` is the other ``--out`` a refusal proposes
        (default ``runs/NAME``). A folder of several models (a map's pair, a comparison's runs)
        is claimed for their :func:`~depthscope.core.run_folder.combined_identity`.
        """
        owner = self.owner()
        notice = None
        if owner is not None and owner.get("fingerprint") != fingerprint:
            same_source = source is not None and owner.get("source") == source
            if not same_source:
                raise DepthscopeError(
                    f"{self.option} {self.path} holds results of model {owner.get('name')!r} "
                    f"({owner.get('source')}), not of {name!r} ({source}); a run directory "
                    f"holds one model, choose another {self.option} (e.g. "
                    f"{suggestion or 'runs/' + name})"
                )
            if owner.get("fingerprint") is not None:
                notice = (
                    f"{name} changed since the last run in {self.path} (weights, config or "
                    f"dtype); its results there are recomputed"
                )
        if owner is None or owner.get("fingerprint") != fingerprint or not self.marker.exists():
            self._claimed_here = owner is None
            self._write_marker(fingerprint, name, source)
        return notice

    def _write_marker(self, fingerprint: str, name: str, source: str | None) -> None:

        atomic_write_json(
            self.marker,
            {
                "depthscope_run": 1,
                "name": name,
                "source": source,
                "fingerprint": fingerprint,
                "claimed": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )

    # ------------------------------------------------------------------ one run at a time

    @contextlib.contextmanager
    def lock(self, progress: object | None = None) -> Iterator[None]:
        """Hold DIR for this process; refuse if another live process holds it.

        The lock is an advisory ``flock`` on ``DIR/.depthscope-lock``, which the kernel drops
        when its holder dies (even by SIGKILL), so a stale lock never blocks: its leftover
        record (pid, host, start) is reported and taken over.
        """
        existing = _nearest_existing(self.path)  # what was there before this run
        self.path.mkdir(parents=True, exist_ok=True)
        handle, previous = _acquire(self.lock_path, self.option)
        failed = False
        try:
            if previous and previous.get("pid") != os.getpid():
                _note(
                    progress,
                    f"took over the lock of {self.path} left by {_describe(previous)}, "
                    f"which is no longer running",
                )
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": " ".join(sys.argv),
            }
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(record))
            handle.flush()
            yield
        except BaseException:
            failed = True
            raise
        finally:
            with contextlib.suppress(OSError):
                self.lock_path.unlink()  # while still holding it: the next run finds no record
            handle.close()
            if failed:
                self._leave_no_trace(existing)

    def _leave_no_trace(self, existing: Path) -> None:
        """A run that fails before writing any output takes back its marker and new directories."""
        if self.present():  # something of the command's is there: keep the claim
            return
        if self._claimed_here:
            with contextlib.suppress(OSError):
                self.marker.unlink()
        for folder in (self.path, *self.path.parents):
            if folder == existing or not folder.is_relative_to(existing):
                break
            try:
                folder.rmdir()  # only if empty: nothing of the user's is ever removed
            except OSError:
                break


def _describe(record: dict) -> str:
    command = str(record.get("command") or "").strip()
    started = record.get("started") or "?"
    where = f"pid {record.get('pid')} on {record.get('host')}"
    return f"{where}, started {started}" + (f": {command}" if command else "")


def _note(progress: object | None, text: str) -> None:
    if progress is not None and hasattr(progress, "note"):
        progress.note(text)
    else:
        print(f"depthscope: {text}", file=sys.stderr)


def _acquire(path: Path, option: str = "--out"):
    """Open and ``flock`` the lock file; return (handle, the record a dead holder left or None)."""
    import fcntl  # POSIX only: imported where the lock is taken

    while True:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open while locked)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            holder = _parse(handle.read())
            handle.close()
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            who = _describe(holder) if holder else "another process"
            raise DepthscopeError(
                f"another depthscope run is using {path.parent} ({who}); wait for it to "
                f"finish or choose another {option}"
            ) from None
        # The holder we waited on may have removed the file after we opened it: lock the new one.
        try:
            same = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            handle.seek(0)
            return handle, _parse(handle.read())
        handle.close()


def _parse(text: str) -> dict | None:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


# ---------------------------------------------------------------------- environment errors

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def describe_os_error(exc: OSError, where: str | os.PathLike | None = None) -> str | None:
    """One line with the fix for an environment error while writing, or None if not one of them."""
    target = exc.filename or where or "the run directory"
    if exc.errno in _DISK_FULL:
        return (
            f"no space left on the device holding {target} (disk full or quota reached); "
            f"work finished so far is saved, free some space and rerun the same command to resume"
        )
    if exc.errno == errno.EROFS:
        return f"{target} is on a read-only file system; choose an --out on a writable disk"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied on {target}; fix its permissions or choose another --out"
    if exc.errno == errno.EFBIG:
        return (
            f"file size limit reached writing {target} (ulimit -f); raise the limit and rerun "
            f"the same command to resume"
        )
    return None


@contextlib.contextmanager
def friendly_os_errors(where: str | os.PathLike | None = None) -> Iterator[None]:
    """Turn a full disk, a read-only file system or a permission error into a DepthscopeError."""
    try:
        yield
    except OSError as exc:
        message = describe_os_error(exc, where)
        if message is None:
            raise
        raise DepthscopeError(message) from exc
