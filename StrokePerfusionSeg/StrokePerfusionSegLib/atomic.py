"""Atomic writing: every output appears complete or not at all.

Files are written to a temporary name beside the target and renamed into place; folders are
filled in a hidden staging folder beside the target and renamed at the end. A crash, an error
or Cancel leaves no half-written output behind. A full disk is an :class:`InputError` (the
user can free space), not a crash.

A folder being filled is locked (``.<name>.lock`` beside it, an OS file lock that dies with its
process): a second writer of the same folder is refused at once instead of silently replacing
the first one's results. Staging folders left by a killed run (``.<name>.tmp-*``) are removed
by the next writer of that folder, which holds the lock, so they cannot be a live writer's.
"""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError

log = logging.getLogger(__name__)

#: Folders whose lock this process holds: a nested writer of the same folder (the pipeline
#: locks a study before loading it, then fills it) does not lock it twice.
_HELD: set[Path] = set()

#: errno values that mean "no room to write": the disk, the user's quota, or a file-size limit.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _no_space_error(error: BaseException) -> OSError | None:
    """The out-of-space OSError behind ``error`` (some writers, e.g. matplotlib's PDF backend,
    fail with another exception while handling it), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            return error
        error = error.__cause__ or error.__context__
    return None


def _raise_if_no_space(error: BaseException, where: Path) -> None:
    full = _no_space_error(error)
    if full is not None:
        raise InputError(
            f"no space left to write {where} ({os.strerror(full.errno)}): free disk space or choose another "
            "output folder; nothing was written there"
        ) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_file_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)``, then rename the result to ``path``.

    The temporary file keeps ``path``'s suffixes (``.seg.nrrd``, ``.nii.gz``) because some
    writers choose the format from them. On any error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:])
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        _raise_if_no_space(error, path)
        raise
    return path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_file_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


@contextmanager
def folder_lock(target: str | os.PathLike) -> Iterator[Path]:
    """Hold the write lock of folder ``target`` (``.<name>.lock`` beside it) while the block runs.

    The lock is an OS lock on an open file (``flock``; on Windows an exclusive-create file), so
    it ends with its process, even one that is killed. The file is removed on release, and so
    are the folders made to hold it when nothing else was written there. Within one process
    the lock is re-entrant: a nested writer of the same folder shares it.

    Raises
    ------
    InputError
        Another run holds the lock.
    """
    target = Path(target)
    key = target.absolute()
    if key in _HELD:
        yield target.parent / f".{target.name}.lock"
        return
    made = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = target.parent / f".{target.name}.lock"
    _HELD.add(key)
    try:
        with _os_lock(target, lock):
            yield lock
    finally:
        _HELD.discard(key)
        _remove_empty(made)


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (innermost first) while they are empty: what a refused run made."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # something was written there (or another run is using it): keep it
            return


@contextmanager
def _os_lock(target: Path, lock: Path) -> Iterator[None]:
    busy = InputError(
        f"{target} is being written by another run right now (lock {lock.name}): wait for it to finish, "
        "or choose another output folder"
    )
    try:
        import fcntl
    except ImportError:  # Windows: exclusive creation; a killed run's lock file is named in the message
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            raise InputError(f"{busy} (if no run is writing it, remove {lock})") from None
        try:
            yield
        finally:
            os.close(handle)
            lock.unlink(missing_ok=True)
        return
    while True:
        handle = os.open(lock, os.O_CREAT | os.O_RDWR, 0o666 & ~_umask())
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise busy from None
        # The holder before us may have removed the file after we opened it: lock the current one.
        try:
            current = os.stat(lock).st_ino == os.fstat(handle).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(handle)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(handle)


def _remove_stale_staging(target: Path) -> None:
    """Clean up after a killed writer of ``target`` (call with its lock held).

    Its staging folders are removed. A writer killed between retiring the previous results
    and renaming the new ones into place left the previous results in ``.<name>.old-*``:
    they are put back, never deleted.
    """
    for retired in target.parent.glob(f".{target.name}.old-*"):
        previous = retired / target.name
        if previous.is_dir() and not target.exists():
            log.warning("restoring %s from %s, left by an interrupted run", target, retired)
            os.replace(previous, target)
        log.warning("removing %s, left by an interrupted run", retired)
        shutil.rmtree(retired, ignore_errors=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        log.warning("removing %s, left by an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)


def check_output_target(target: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Refuse an output folder that cannot be written safely, before any work is done.

    ``target`` must have a name of its own (not ``.``), must not be a symbolic link (it would
    lead the output elsewhere, or nowhere), nor a file, nor exist unless ``overwrite``.
    """
    target = Path(target)
    if target.name in ("", ".", ".."):
        raise InputError(f"output folder {target} has no name of its own: give a new folder, e.g. results/P0001")
    if target.is_symlink():
        raise InputError(f"output folder {target} is a symbolic link: remove the link or choose another output folder")
    if target.exists() and not target.is_dir():
        raise InputError(f"output {target} exists and is not a folder: remove it or choose another output folder")
    if target.exists() and not overwrite:
        raise InputError(
            f"output folder {target} already exists: remove it, choose another output folder, or overwrite it "
            "(--overwrite)"
        )
    return target


def check_apart(output: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output folder that is, holds or lies inside one of the ``inputs``.

    Replacing such a folder (``--overwrite``) would delete the input study itself, e.g.
    ``--case COHORT/P0001 --out COHORT``. Paths are compared resolved (links followed).

    Raises
    ------
    InputError
        Naming both paths.
    """
    out = Path(output).resolve()
    for given in inputs:
        source = Path(given).resolve()
        if out == source or source in out.parents or out in source.parents:
            raise InputError(
                f"output {output} overlaps the input {given}: writing there could replace the input; "
                "choose an output folder outside the inputs"
            )


@contextmanager
def staged_folder(target: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Fill a folder atomically.

    Yields an empty staging folder beside ``target``; when the ``with`` block ends without an
    error, the staging folder replaces ``target``. On an error it is removed and ``target`` is
    left as it was. The folder's lock (:func:`folder_lock`) is held throughout, and staging
    folders an interrupted writer left are removed first.

    Raises
    ------
    InputError
        ``target`` exists and ``overwrite`` is false; it is a link or a file; another run is
        writing it; the disk is full.
    """
    target = check_output_target(target, overwrite=overwrite)
    with folder_lock(target):
        _remove_stale_staging(target)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's private 0700 is not meant for shared output
        try:
            yield staging
            check_output_target(target, overwrite=overwrite)
            if target.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                os.replace(target, retired / target.name)
                try:
                    os.replace(staging, target)
                except BaseException:
                    os.replace(retired / target.name, target)  # put the previous results back
                    raise
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(staging, target)
        except BaseException as error:
            shutil.rmtree(staging, ignore_errors=True)
            _raise_if_no_space(error, target)
            raise


def write_csv_atomically(path: str | os.PathLike, rows: Iterable[Mapping], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts) as CSV with a header of ``columns``; other keys are ignored."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomically(path, buffer.getvalue())
