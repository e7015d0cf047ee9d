"""Where images and documents come from: files, folders (recursive) and .zip archives (no Django).

A source item is a plain, JSON-safe reference (a path, plus a member name for a file
inside a zip archive) so it can travel in a Celery message and be read by any worker
on the machine that can see the path.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

ZIP_SUFFIXES = {".zip"}
# Documents are imported whole, by tasks of their own (their pages can be many).
DOCUMENT_SUFFIXES = {".pdf", ".tif", ".tiff"}
NOT_FOUND = "no such file or folder"
TOO_LARGE = "file too large: {size:,} bytes exceeds the limit of {limit:,} ({name})"
HEAD_BYTES = 1024  # enough to tell a document from an image
BAD_ARCHIVE = "unreadable zip archive ({detail})"
ENCRYPTED_MEMBER = "encrypted zip member (password-protected archives are not supported)"
UNREADABLE = "cannot read file ({detail})"
NOT_REGULAR = "not a regular file ({kind}): skipped"
LINK_OUTSIDE = "a symbolic link that leads out of the imported folder: not followed"
BROKEN_LINK = "a symbolic link to nothing: skipped"
_FILE_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFDIR: "a folder", stat.S_IFLNK: "a symbolic link"}
# Opening never waits (a FIFO opens at once without a writer, and is then refused by fstat), never
# makes a terminal ours, and never follows a link the listing did not resolve.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))


class SourceRejected(ValueError):
    """A source could not be read; the message says why, for the user."""


def name_as_text(name: str) -> str:
    """A file name as text the database takes: the bytes of a name that is not UTF-8 (which Python
    keeps as lone surrogates) are shown as ``\\xNN``, and a NUL as ``\\x00``."""
    try:
        text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that is no escaped byte
        text = name.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.replace("\x00", "\\x00")


def _to_json_text(name: str | None) -> str | list | None:
    """A path or member name for a JSON column: as it is when PostgreSQL takes it, else tagged and
    hex-encoded, so that a worker opens the very same name (JSON cannot hold lone surrogates or NUL)."""
    if name is None or name_as_text(name) == name:
        return name
    return ["hex", name.encode("utf-8", "surrogatepass").hex()]


def _from_json_text(value: str | list | None) -> str | None:
    if isinstance(value, list):
        return bytes.fromhex(value[1]).decode("utf-8", "surrogatepass")
    return value


@dataclass(frozen=True)
class SourceItem:
    path: str  # absolute path of the file (links resolved), or of the archive holding it
    member: str | None = None  # name inside the zip archive
    label: str | None = None  # valid text (``name_as_text``)
    size: int | None = None  # bytes, when known at listing time (to share out the work)
    shown_path: str | None = None  # the path as listed, when it was a link (``path`` is its target)

    @property
    def display(self) -> str:
        """Where the item comes from, as valid text (the name stored and shown)."""
        path = self.shown_path or self.path
        return name_as_text(f"{path}!/{self.member}" if self.member else path)

    @property
    def name(self) -> str:
        return name_as_text(os.path.basename(self.member or self.shown_path or self.path))

    @property
    def is_document(self) -> bool:
        return os.path.splitext(self.name)[1].lower() in DOCUMENT_SUFFIXES

    def to_json(self) -> list:
        return [_to_json_text(self.path), _to_json_text(self.member), self.label, self.size,
                _to_json_text(self.shown_path)]

    @classmethod
    def from_json(cls, value: list) -> SourceItem:
        path, member, label, size, *shown = value
        return cls(_from_json_text(path), _from_json_text(member), label, size, _from_json_text(next(iter(shown), None)))


@dataclass(frozen=True)
class SourceError:
    """A path that yields no item at all (missing path, unreadable archive, FIFO, link out)."""

    display: str
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "display", name_as_text(self.display))


def iter_source_items(
    paths: Iterable[str | os.PathLike], *, label_from_folder: bool = False
) -> Iterator[SourceItem | SourceError]:
    """Expand files, folders and zip archives into items, in a stable order.

    Only regular files are items: FIFOs, sockets and devices are reported (opening a FIFO
    would wait for a writer). A path named here is followed if it is a link; inside a folder,
    links are followed only to what lies within the folder, and the others are reported.
    """
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        try:
            mode = path.stat().st_mode
        except OSError:
            yield SourceError(str(path), NOT_FOUND)
            continue
        if stat.S_ISDIR(mode):
            yield from _folder_items(path, label_from_folder)
        elif stat.S_ISREG(mode):
            yield from _items_for_file(path.resolve(), label_from_folder, shown=path)
        else:
            yield SourceError(str(path), NOT_REGULAR.format(kind=_kind(mode)))


def _folder_items(root: Path, label_from_folder: bool) -> Iterator[SourceItem | SourceError]:
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):  # links to folders are listed, never entered
        dirnames.sort()
        for name in dirnames:
            folder = Path(dirpath) / name
            if folder.is_symlink() and not _within(os.path.realpath(folder), real_root):
                yield SourceError(str(folder), LINK_OUTSIDE)
            # a link to a folder within: its files are listed where they are
        for filename in sorted(filenames):
            yield from _folder_entry(Path(dirpath) / filename, real_root, label_from_folder)


def _folder_entry(path: Path, real_root: str, label_from_folder: bool) -> Iterator[SourceItem | SourceError]:
    try:
        mode = path.lstat().st_mode
    except OSError as exc:
        yield SourceError(str(path), UNREADABLE.format(detail=exc))
        return
    target = path
    if stat.S_ISLNK(mode):
        target = Path(os.path.realpath(path))
        if not _within(str(target), real_root):
            yield SourceError(str(path), LINK_OUTSIDE)
            return
        try:
            mode = target.stat().st_mode
        except OSError:
            yield SourceError(str(path), BROKEN_LINK)
            return
    if not stat.S_ISREG(mode):
        yield SourceError(str(path), NOT_REGULAR.format(kind=_kind(mode)))
        return
    yield from _items_for_file(target, label_from_folder, shown=path)


def _within(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _kind(mode: int) -> str:
    return _FILE_KINDS.get(stat.S_IFMT(mode), "not a file")


def _items_for_file(path: Path, label_from_folder: bool, shown: Path) -> Iterator[SourceItem | SourceError]:
    """The items of one regular file (``path``, links resolved; ``shown``, as it was listed)."""
    label = name_as_text(shown.parent.name) if label_from_folder else None
    shown_path = str(shown) if shown != path else None
    if path.suffix.lower() not in ZIP_SUFFIXES:
        try:
            size = path.stat().st_size
        except OSError:
            size = None  # read_source reports why
        yield SourceItem(str(path), None, label, size, shown_path)
        return
    try:
        with open_regular(str(path)) as fh, zipfile.ZipFile(fh) as archive:
            members = sorted((info.filename, info.file_size) for info in archive.infolist() if not info.is_dir())
    except SourceRejected as exc:
        yield SourceError(str(shown), str(exc))
        return
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # ValueError: a name flagged UTF-8 that is not
        yield SourceError(str(shown), BAD_ARCHIVE.format(detail=exc))
        return
    for member, size in members:
        parent = os.path.basename(os.path.dirname(member))
        label = (name_as_text(parent) or None) if label_from_folder else None
        yield SourceItem(str(path), member, label, size, shown_path)


def open_regular(path: str) -> BinaryIO:
    """Open a regular file for reading, and nothing else: a FIFO, a device or a link put in its
    place after it was listed is refused without waiting (``SourceRejected``)."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SourceRejected(NOT_REGULAR.format(kind=_kind(mode)))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _limit(max_bytes: int | Callable[[bytes], tuple[int, str]], head: bytes) -> tuple[int, str]:
    return max_bytes(head) if callable(max_bytes) else (max_bytes, "IMAGE_MAX_BYTES")


def read_source(item: SourceItem, *, max_bytes: int | Callable[[bytes], tuple[int, str]]) -> bytes:
    """Read an item's bytes, refusing anything over the limit before reading it.

    ``max_bytes``: the limit, or a function of the first KB that returns the limit and its
    name (documents and images have their own), so nothing is read past the one that applies.
    """
    try:
        if item.member is None:
            with open_regular(item.path) as fh:
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
        with open_regular(item.path) as zip_file, zipfile.ZipFile(zip_file) as archive:
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
    except (OSError, KeyError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError) as exc:
        raise SourceRejected(UNREADABLE.format(detail=exc)) from None
