"""Where images and documents come from: files, folders (recursive) and .zip archives (no Django).

A source item is a plain, JSON-safe reference (a path, plus a member name for a file
inside a zip archive) so it can travel in a Celery message and be read by any worker
on the machine that can see the path.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ZIP_SUFFIXES = {".zip"}
# Documents are imported whole, by tasks of their own (their pages can be many).
DOCUMENT_SUFFIXES = {".pdf", ".tif", ".tiff"}
NOT_FOUND = "no such file or folder"
TOO_LARGE = "file too large: {size:,} bytes exceeds the limit of {limit:,} ({name})"
HEAD_BYTES = 1024  # enough to tell a document from an image
BAD_ARCHIVE = "unreadable zip archive ({detail})"
ENCRYPTED_MEMBER = "encrypted zip member (password-protected archives are not supported)"
UNREADABLE = "cannot read file ({detail})"


class SourceRejected(ValueError):
    """A source could not be read; the message says why, for the user."""


@dataclass(frozen=True)
class SourceItem:
    path: str  # absolute path of the file, or of the archive holding it
    member: str | None = None  # name inside the zip archive
    label: str | None = None
    size: int | None = None  # bytes, when known at listing time (to share out the work)

    @property
    def display(self) -> str:
        return f"{self.path}!/{self.member}" if self.member else self.path

    @property
    def name(self) -> str:
        return os.path.basename(self.member or self.path)

    @property
    def is_document(self) -> bool:
        return os.path.splitext(self.name)[1].lower() in DOCUMENT_SUFFIXES

    def to_json(self) -> list:
        return [self.path, self.member, self.label, self.size]

    @classmethod
    def from_json(cls, value: list) -> SourceItem:
        return cls(*value)


@dataclass(frozen=True)
class SourceError:
    """A path that yields no item at all (missing path, unreadable archive)."""

    display: str
    reason: str


def iter_source_items(
    paths: Iterable[str | os.PathLike], *, label_from_folder: bool = False
) -> Iterator[SourceItem | SourceError]:
    """Expand files, folders and zip archives into items, in a stable order."""
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                for filename in sorted(filenames):
                    yield from _items_for_file(Path(dirpath) / filename, label_from_folder)
        elif path.is_file():
            yield from _items_for_file(path, label_from_folder)
        else:
            yield SourceError(str(path), NOT_FOUND)


def _items_for_file(path: Path, label_from_folder: bool) -> Iterator[SourceItem | SourceError]:
    label = path.parent.name if label_from_folder else None
    if path.suffix.lower() not in ZIP_SUFFIXES:
        try:
            size = path.stat().st_size
        except OSError:
            size = None  # read_source reports why
        yield SourceItem(str(path), None, label, size)
        return
    try:
        with zipfile.ZipFile(path) as archive:
            members = sorted((info.filename, info.file_size) for info in archive.infolist() if not info.is_dir())
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        yield SourceError(str(path), BAD_ARCHIVE.format(detail=exc))
        return
    for member, size in members:
        parent = os.path.basename(os.path.dirname(member))
        yield SourceItem(str(path), member, (parent or None) if label_from_folder else None, size)


def _limit(max_bytes: int | Callable[[bytes], tuple[int, str]], head: bytes) -> tuple[int, str]:
    return max_bytes(head) if callable(max_bytes) else (max_bytes, "IMAGE_MAX_BYTES")


def read_source(item: SourceItem, *, max_bytes: int | Callable[[bytes], tuple[int, str]]) -> bytes:
    """Read an item's bytes, refusing anything over the limit before reading it.

    ``max_bytes``: the limit, or a function of the first KB that returns the limit and its
    name (documents and images have their own), so nothing is read past the one that applies.
    """
    try:
        if item.member is None:
            with open(item.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                head = fh.read(HEAD_BYTES)
                limit, name = _limit(max_bytes, head)
                if size > limit:
                    raise SourceRejected(TOO_LARGE.format(size=size, limit=limit, name=name))
                # read(n) sets aside n bytes first: ask for what the file holds, not for the limit
                data = head + fh.read(max(size - len(head), 0) + 1)
            if len(data) > limit:  # it grew while we read
                raise SourceRejected(TOO_LARGE.format(size=len(data), limit=limit, name=name))
            return data
        with zipfile.ZipFile(item.path) as archive:
            info = archive.getinfo(item.member)
            if info.flag_bits & 0x1:
                raise SourceRejected(ENCRYPTED_MEMBER)
            with archive.open(info) as fh:
                head = fh.read(HEAD_BYTES)
                limit, name = _limit(max_bytes, head)
                if info.file_size > limit:
                    raise SourceRejected(TOO_LARGE.format(size=info.file_size, limit=limit, name=name))
                # Bounded read: a member whose header lies about its size cannot inflate past
                # the limit (nor past its stated size by more than a byte, which tells).
                data = head + fh.read(max(min(info.file_size, limit) - len(head), 0) + 1)
            if len(data) > limit:
                raise SourceRejected(TOO_LARGE.format(size=len(data), limit=limit, name=name))
            if len(data) > info.file_size:
                raise SourceRejected(UNREADABLE.format(detail="the member is larger than its header says"))
            return data
    except SourceRejected:
        raise
    except (OSError, KeyError, zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        raise SourceRejected(UNREADABLE.format(detail=exc)) from None
