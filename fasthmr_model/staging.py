"""Staging folders for outputs that appear whole or not at all (bundles, bags, rendered splits).

An output is written into a hidden folder beside its target, `.{target name}.staging-{pid}-{random}`, then
renamed into place. A process killed half-way leaves its staging folder behind; the next run that writes
the same target finds it by name and removes it once its owner process is gone. Replacing an existing
target exchanges the two folders in one step (Linux renameat2 RENAME_EXCHANGE), so the target always holds
the old output or the new one, never nothing; where the exchange is not available, two renames follow each
other with nothing in between.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

from fasthmr_model.errors import FastHMRError

STAGING_MARK = ".staging-"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def staging_folder(target: str | os.PathLike) -> Path:
    """A new empty staging folder beside `target` (created with the umask's permissions: outputs are read by
    other users), after removing the staging folders of `target` that dead processes left."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(target)
    folder = target.parent / f".{target.name}{STAGING_MARK}{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir()
    return folder


@contextlib.contextmanager
def scratch_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A staging folder beside `target` for intermediate files (an export before it becomes a bundle), removed
    on leaving; a killed process's is removed by the next writer of `target`."""
    folder = staging_folder(target)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_abandoned(target: str | os.PathLike) -> list[Path]:
    """Removes the staging folders of `target` whose owner process no longer runs; returns them."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for folder in target.parent.glob(f".{target.name}{STAGING_MARK}*"):
        owner = folder.name[len(f".{target.name}{STAGING_MARK}"):].split("-", 1)[0]
        if owner.isdigit() and not _process_exists(int(owner)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def move_into_place(staging: Path, target: str | os.PathLike, overwrite: bool = False) -> None:
    """Renames the finished `staging` (a folder, or a file) to `target`. With overwrite, an existing target is
    exchanged with it in one step and the old one removed; without, an existing target is an error (and
    `staging` is removed)."""
    target = Path(target)
    if not (target.exists() or target.is_symlink()):
        os.rename(staging, target)
        return
    if not overwrite:
        _remove(staging)
        raise FastHMRError(f"{target} already exists; pass --overwrite to replace it, or give a new path")
    if not _exchange(staging, target):
        retired = target.parent / f".{target.name}{STAGING_MARK}{os.getpid()}-old-{secrets.token_hex(4)}"
        os.rename(target, retired)
        os.rename(staging, target)
        staging = retired
    _remove(staging)  # now the old output


def _exchange(first: Path, second: Path) -> bool:
    """Swaps two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # an old kernel, or a file system without it
        return False
    raise OSError(code, os.strerror(code), str(second))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
