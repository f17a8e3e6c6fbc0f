"""The input file, opened once, checked as opened and read within limits.

:func:`read_input` resolves the path once, refuses anything that is not a regular file before opening
it (a FIFO would block the stage forever, a device never ends), opens it without following a
symlink, checks the *opened* file (a regular file, where the name resolved, inside the allowed
folders) and reads it into memory. Everything after that reads :attr:`InputFile.data`, never the name
again, so a symlink swapped in after the spec was checked cannot change what is read or kept.

Sizes are bounded by :data:`MAX_INPUT_BYTES` (also after gzip decompression, which streams and stops as
soon as the limit is passed), :data:`MAX_COLUMNS` and :data:`MAX_FIELD_CHARS`; each can be raised with
its environment variable. A real MMM file is far below every default.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import stat
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path


class DataFormatError(ValueError):
    """The input file cannot be read as a table; the message names the file and the fix."""


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limit:
    """A bound on input files: its environment variable, default and unit (for the message)."""

    env: str
    default: int
    unit: str

    def value(self) -> int:
        """The limit in force: ``$env`` when set (a positive whole number), else the default."""
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            n = int(raw.replace("_", ""))
        except ValueError:
            n = 0
        if n < 1:
            raise DataFormatError(
                f"environment variable {self.env}={raw!r} is not a positive whole number; set it to a number of "
                f"{self.unit} (default {self.default:,}) or unset it"
            )
        return n

    def exceeded(self, path: Path | str, found: str) -> DataFormatError:
        n = self.value()
        return DataFormatError(
            f"data file {path}: {found} (the limit is {n:,} {self.unit}). A real MMM file stays far below the "
            f"limit, so check that this is the right file; if it is, raise the limit with the environment variable "
            f"{self.env} (e.g. {self.env}={2 * n})"
        )


MAX_INPUT_BYTES = Limit("MMM_MAX_INPUT_BYTES", 2 * 1024**3, "bytes, of the file and of its content unpacked")
MAX_COLUMNS = Limit("MMM_MAX_COLUMNS", 20_000, "columns")
MAX_FIELD_CHARS = Limit("MMM_MAX_FIELD_CHARS", 1024**2, "characters in one cell")

_CHUNK = 1 << 20


# --------------------------------------------------------------------------- opening


@dataclass(frozen=True)
class InputFile:
    """An input file read once: the name as given, the file actually opened, and its bytes."""

    path: Path
    real: Path
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def __str__(self) -> str:
        return str(self.path)


def _kind(mode: int) -> str | None:
    """What a non-regular file is, in words (``None`` for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), which could block reading forever"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _not_regular(path: Path, kind: str) -> DataFormatError:
    return DataFormatError(f"data path {path} is {kind}; point data_path at a CSV or Parquet file")


def _inside(real: Path, roots: list[Path]) -> bool:
    return any(r.is_absolute() and real.is_relative_to(r) for r in roots)


def _outside(path: Path, real: Path, roots: list[Path]) -> DataFormatError:
    return DataFormatError(
        f"data file {path} now resolves to {real}, outside the folders it may be read from "
        f"({', '.join(str(r) for r in roots)}): it changed after the spec was checked (a symlink swapped in?). "
        "Point data_path at the file itself, inside those folders, and run again"
    )


def _opened_path(fd: int) -> Path | None:
    """Where the open file descriptor really is (Linux ``/proc``, macOS ``F_GETPATH``); ``None`` if unknown."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
    if sys.platform == "darwin":
        import fcntl

        try:
            raw = fcntl.fcntl(fd, 50, b"\0" * 1024)  # F_GETPATH
            return Path(raw.split(b"\0", 1)[0].decode())
        except OSError:
            return None
    return None


def _open_error(path: Path, e: OSError) -> DataFormatError:
    if e.errno == errno.ENOENT:
        return DataFormatError(
            f"data file not found: {path}; check data_path in the spec (a relative path is relative to the spec file)"
        )
    if e.errno == errno.ELOOP:
        return DataFormatError(
            f"data file {path} became a symlink after its path was resolved; it is not read. Point data_path at "
            "the file itself and run again"
        )
    if e.errno in (errno.EACCES, errno.EPERM):
        return DataFormatError(f"data file {path} cannot be read: permission denied; make it readable for this user")
    return DataFormatError(f"data file {path} cannot be opened ({e.strerror}); check the path and the file")


def _read_fd(fd: int, path: Path, size: int) -> bytes:
    limit = MAX_INPUT_BYTES.value()
    if size > limit:
        raise MAX_INPUT_BYTES.exceeded(path, f"the file has {size:,} bytes")
    buf = bytearray()
    while True:
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:  # the file grew while being read
            raise MAX_INPUT_BYTES.exceeded(path, f"the file has more than {limit:,} bytes")


def _check_opened(fd: int, st: os.stat_result, path: Path, real: Path, roots: list[Path]) -> Path:
    """Where the opened file really is, refused outside ``roots``: a folder on the way may have been
    swapped for a symlink between resolving the name and opening it."""
    opened = _opened_path(fd)
    if opened is None:
        # No way to ask where the descriptor is: at least the name must still lead to the opened file.
        again = os.stat(real)
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
            raise _outside(path, real, roots)
        return real
    if opened != real and not _inside(opened, roots):
        raise _outside(path, opened, roots)
    return opened


def read_input(path: str | Path, allowed_roots: list[Path] | None = None) -> InputFile:
    """Open ``path`` once, check the opened file and read it (bounded).

    Parameters
    ----------
    path
        The data file.
    allowed_roots
        Absolute folders the file must resolve into, checked on the file as opened (``None``: no
        folder check, for a path the user gave directly, e.g. ``mmm datasets add``).

    Returns
    -------
    InputFile
        The bytes read; read them, not the name, from here on.

    Raises
    ------
    DataFormatError
        Missing, not a regular file (folder, FIFO, device), outside ``allowed_roots`` as opened,
        unreadable, or larger than :data:`MAX_INPUT_BYTES`.
    """
    path = Path(path)
    real = Path(os.path.realpath(path))  # resolved once: only this name is opened, and without following links
    if allowed_roots is not None and not _inside(real, allowed_roots):
        raise _outside(path, real, allowed_roots)
    try:
        kind = _kind(os.stat(real).st_mode)  # stat never blocks: a FIFO or device is refused before it is opened
    except OSError as e:
        raise _open_error(path, e) from None
    if kind:
        raise _not_regular(path, kind)
    flags = os.O_RDONLY
    for name in ("O_NONBLOCK", "O_NOFOLLOW", "O_NOCTTY", "O_CLOEXEC", "O_BINARY"):
        flags |= getattr(os, name, 0)
    try:
        fd = os.open(real, flags)
    except OSError as e:
        raise _open_error(path, e) from None
    try:
        st = os.fstat(fd)
        kind = _kind(st.st_mode)  # swapped for a FIFO between stat and open: O_NONBLOCK made the open return
        if kind:
            raise _not_regular(path, kind)
        if allowed_roots is not None:
            real = _check_opened(fd, st, path, real, allowed_roots)
        data = _read_fd(fd, path, st.st_size)
    finally:
        os.close(fd)
    return InputFile(path=path, real=real, data=data)


# --------------------------------------------------------------------------- decompression


def gunzip(data: bytes, path: Path | str) -> bytes:
    """Decompress gzip ``data`` in chunks, stopping as soon as :data:`MAX_INPUT_BYTES` is passed."""
    limit = MAX_INPUT_BYTES.value()
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            while chunk := gz.read(_CHUNK):
                out += chunk
                if len(out) > limit:
                    raise MAX_INPUT_BYTES.exceeded(path, f"the gzip file unpacks to more than {limit:,} bytes")
    except (EOFError, OSError, zlib.error) as e:
        raise DataFormatError(
            f"data file {path} is a damaged or incomplete gzip file ({e}); copy or download it again, or use the "
            "uncompressed CSV"
        ) from None
    return bytes(out)


# Content, not the name, says what a file is: an .xlsx renamed .csv is still a workbook.
_SPREADSHEET = "save the sheet as CSV (Excel: File > Save As > CSV UTF-8) and use that file"
_MAGIC = [
    (b"PK\x03\x04", f"is a ZIP archive: an Excel .xlsx or OpenDocument spreadsheet (or a zipped file), not a CSV; {_SPREADSHEET}, or unzip it"),
    (b"PK\x05\x06", "is an empty ZIP archive, not a CSV; export the data as CSV"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", f"is an old Excel .xls workbook (an Office file), not a CSV; {_SPREADSHEET}"),
    (b"BZh", "is bzip2-compressed, which is not read; decompress it (or compress it with gzip: .csv.gz)"),
    (b"\xfd7zXZ\x00", "is xz-compressed, which is not read; decompress it (or compress it with gzip: .csv.gz)"),
    (b"\x28\xb5\x2f\xfd", "is zstd-compressed, which is not read; decompress it (or compress it with gzip: .csv.gz)"),
    (b"7z\xbc\xaf\x27\x1c", "is a 7-Zip archive, which is not read; extract the CSV from it"),
    (b"%PDF", "is a PDF document, not a table; export the data as CSV"),
    (b"\x1f\x8b", "is gzip-compressed twice; decompress it once more (gunzip) so one gzip layer is left"),
]


def content_problem(head: bytes) -> str | None:
    """What is wrong with a file whose content starts with ``head`` (a workbook, an archive), or ``None``."""
    for magic, problem in _MAGIC:
        if head.startswith(magic):
            return problem
    return None

