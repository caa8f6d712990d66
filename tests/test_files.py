"""review/files.py: how the desk writes every file it keeps."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import umask


def test_files_appear_whole_by_the_umask_and_replace_only_when_told(tmp_path: Path) -> None:
    """review.files, under every file the desk keeps (media store, backups, reports, the audit
    export): the umask's permissions, no leftover on failure, no replacing where refused, a link
    in the way replaced and not followed."""
    from review import files
    from review.media import prepare_image, write_image

    mode = oct(0o666 & ~umask())
    target = tmp_path / "out" / "a.txt"
    target.parent.mkdir()
    files.write_text(target, "first\r\n")
    assert target.read_bytes() == b"first\r\n" and oct(target.stat().st_mode & 0o777) == mode
    with pytest.raises(RuntimeError), files.written_beside(target) as fh:
        fh.write(b"half")
        raise RuntimeError("interrupted")
    with pytest.raises(FileExistsError):
        files.write_bytes(target, b"second", overwrite=False)
    assert target.read_bytes() == b"first\r\n"  # neither the failed write nor the refused one touched it
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("keep", encoding="utf-8")
    link = target.parent / "link.txt"
    link.symlink_to(elsewhere)
    with pytest.raises(FileExistsError):
        files.write_bytes(link, b"x", overwrite=False)
    files.write_bytes(link, b"replaced")
    assert not link.is_symlink() and link.read_bytes() == b"replaced" and elsewhere.read_text() == "keep"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.txt", "link.txt"]  # no temporary file left
    # the media store's files too (tempfile.mkstemp made them 0600)
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(buffer, "PNG")
    stored = write_image(prepare_image(buffer.getvalue(), max_pixels=10**6, thumbnail_size=64), tmp_path / "media")
    for rel in (stored.path, stored.thumb_path):
        assert oct((tmp_path / "media" / rel).stat().st_mode & 0o777) == mode
