"""Files that appear whole or not at all: the one place for the desk's write-beside-then-rename.

Every file the desk writes for keeps (the media store's originals and thumbnails, a backup's
copies and manifest, report files, the audit export) is written under a temporary name in the
folder of its target and only then given its name. A reader never sees half a file, a crash
leaves at most a temporary file, and a link standing where the file goes is replaced, not
followed. Temporary names start with :data:`TEMP_PREFIX`: the media store's ``media gc`` and
backups know files with it for leftovers of interrupted writes.

The temporary file is created with mode 0o666 and the kernel applies the process' umask, as a
plain ``open(…, "w")`` would (``tempfile.mkstemp`` makes 0o600 files; reading the umask with
``os.umask`` would change it for every thread for a moment).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMP_PREFIX = ".tmp-"
_TRIES = 100


def _open_temporary(folder: Path, suffix: str) -> tuple[int, Path]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)  # O_EXCL: a link is not followed
    for _ in range(_TRIES):
        path = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}{suffix}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def _publish_new(temporary: Path, target: Path) -> None:
    """Give ``temporary`` the name ``target`` without replacing a file that appeared meanwhile:
    a hard link where the file system has them, else a rename after a last check."""
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some network and FUSE file systems)
        if os.path.lexists(target):
            raise FileExistsError(f"{target} already exists") from None
        os.replace(temporary, target)


@contextmanager
def written_beside(
    target: Path,
    *,
    text: bool = False,
    overwrite: bool = True,
    fsync: bool = False,
) -> Iterator[IO[Any]]:
    """A file open for writing beside ``target`` (its folder must exist); when the block ends
    without an error it becomes ``target``, else it is removed and ``target`` is left as it was.

    ``text``: a UTF-8 text file without newline translation (the caller writes the line ends);
    else binary. ``overwrite``: replace what ``target`` names (a file, or a link, which is not
    followed); with False a target that exists, or appears while writing, raises
    ``FileExistsError`` and nothing is replaced. ``fsync``: flush the data to the disk before
    the file gets its name."""
    fd, temporary = _open_temporary(target.parent, target.suffix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") if text else os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        if overwrite:
            os.replace(temporary, target)
        else:
            _publish_new(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)  # after a link, the second name; after an error, the file


def write_bytes(target: Path, data: bytes, **options: Any) -> None:
    """``data`` into ``target`` through :func:`written_beside` (same options)."""
    with written_beside(target, **options) as fh:
        fh.write(data)


def write_text(target: Path, text: str, **options: Any) -> None:
    """``text`` (UTF-8, line ends as given) into ``target`` through :func:`written_beside`."""
    with written_beside(target, text=True, **options) as fh:
        fh.write(text)
