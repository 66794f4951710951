"""Writing files so that a crash never leaves a broken one."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Callable

NAME_MAX = 255  # bytes of a file name (most file systems)
# the name atomic_write gives its temporary file: ".<name>.<8 hex digits>.tmp", the name cut
# short where that would pass NAME_MAX
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$")


def atomic_write(path: Path, write: Callable) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, flush it to disk, then
    rename it over ``path`` (atomic on POSIX): readers see the old file or the new one. A
    symbolic link is followed (its target is replaced, the link stays); a file replaced
    keeps its permission bits (and owner, where allowed); a path that is there but is no
    regular file (a directory, a device, a FIFO) is refused with a ValueError."""
    shown, path = path, Path(os.path.realpath(path))
    if path.exists() and not path.is_file():
        raise ValueError(f"{shown}: not a regular file; only a regular file is written over")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # (mkdir's word for a parent that is a file)
        raise NotADirectoryError(errno.ENOTDIR, "a folder on the way is a file",
                                 str(shown)) from None
    name, token = path.name, secrets.token_hex(4)
    while len(os.fsencode(f".{name}.{token}.tmp")) > NAME_MAX:
        name = name[:-1]
    tmp = path.with_name(f".{name}.{token}.tmp")
    try:
        old = path.stat() if path.exists() else None
        with open(tmp, "wb") as f:
            if old is not None:  # the file keeps its permissions (and owner, where allowed)
                os.fchmod(f.fileno(), stat.S_IMODE(old.st_mode))
                if (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
                    with contextlib.suppress(PermissionError):
                        os.fchown(f.fileno(), old.st_uid, old.st_gid)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def remove_stale_temporaries(directory: Path, names) -> list[Path]:
    """Delete the temporary files that an ``atomic_write`` of one of the files ``names``,
    killed mid-write, left in ``directory`` (call it only while nothing else writes there);
    returns them. Anything else there, whatever its name, is not this caller's."""
    stale = [path for path in directory.iterdir()
             if (match := _TEMPORARY.match(path.name)) and match["name"] in names
             and path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
