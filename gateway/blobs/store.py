"""A content-addressed blob store on disk.

A blob lives at `<dir>/<first two characters>/<sha256>`, where `sha256` is the base64url
SHA-256 of its bytes (43 characters from `[A-Za-z0-9_-]`, so a name can never leave the
folder). A write streams into a temporary file under `<dir>/.tmp/` (same filesystem), hashing
and counting as it goes; it stops with 413 `too-large` as soon as the limit is passed, with
400 `digest-mismatch` when the content is not what the caller announced, and is renamed into
place (atomically, after an fsync) only when everything holds. On any failure, a client that
disconnects or a cancelled task included, the temporary file is removed. Temporary files of a
crashed process are removed at the next start once they are an hour old (another process
sharing the folder may still be writing younger ones).

Files are created mode 0600 and folders 0700: materials carry personal data. Disk work runs in
worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.federation.messages import SHA256_B64URL_RE
from trust.errors import ErrorCode, TongbanError
from trust.keys import b64url

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
READ_CHUNK = 256 * 1024
_FLUSH_AT = 1024 * 1024  # bytes buffered before one write in a worker thread
_STALE_TEMP_AGE = 3600.0
_TEMP_DIR = ".tmp"


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    created: bool
    """False when the store already held the blob (nothing was written)."""


class BlobNotFound(TongbanError):
    code = ErrorCode.NOT_FOUND


def check_name(sha256: str) -> str:
    if not SHA256_B64URL_RE.match(sha256):
        raise TongbanError("a blob is named by the base64url SHA-256 of its content "
                           "(43 characters)", code=ErrorCode.MALFORMED)
    return sha256


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn` in a worker thread; if we are cancelled meanwhile, let it finish first, so a
    cleanup that follows never races a write on the same file."""
    future = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


def _write_chunks(file: io.FileIO | None, hasher: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        hasher.update(chunk)
        if file is not None:
            view = memoryview(chunk)
            while view:
                written = file.write(view)
                view = view[written or 0:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self._tmp = root / _TEMP_DIR

    def open(self) -> None:
        """Create the folders and remove temporary files left by a crash (sync, at start-up)."""
        self._tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        cutoff = time.time() - _STALE_TEMP_AGE
        for leftover in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    log.info("removed stale partial blob %s", leftover.name)

    def path(self, sha256: str) -> Path:
        check_name(sha256)
        return self.root / sha256[:2] / sha256

    def size(self, sha256: str) -> int | None:
        """The size of a held blob, or None when it is not held (a quick `stat`)."""
        if not SHA256_B64URL_RE.match(sha256):
            return None
        try:
            return (self.root / sha256[:2] / sha256).stat().st_size
        except FileNotFoundError:
            return None

    def has(self, sha256: str) -> bool:
        return self.size(sha256) is not None

    async def write(self, chunks: AsyncIterable[bytes], *, expected: str | None = None,
                    content_length: int | None = None) -> StoredBlob:
        """Stream `chunks` into the store; see the module docstring for the guarantees.

        With `expected` (the name the sender gave), a blob already held is hashed but not
        written again, and the answer says `created=False`.
        """
        limit = self.max_bytes
        if expected is not None:
            check_name(expected)
        if content_length is not None and content_length > limit:
            raise TongbanError(f"blob exceeds {limit} bytes", code=ErrorCode.TOO_LARGE)
        held = expected is not None and self.has(expected)
        hasher = hashlib.sha256()
        size = 0
        temp: Path | None = None
        file: io.FileIO | None = None
        try:
            if not held:
                temp = self._tmp / f"{uuid.uuid4().hex}.part"
                file = await _in_thread(self._create_temp, temp)
            buffer: list[bytes] = []
            buffered = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TongbanError(f"blob exceeds {limit} bytes", code=ErrorCode.TOO_LARGE)
                buffer.append(chunk)
                buffered += len(chunk)
                if buffered >= _FLUSH_AT:
                    await _in_thread(_write_chunks, file, hasher, buffer)
                    buffer, buffered = [], 0
            if buffer:
                await _in_thread(_write_chunks, file, hasher, buffer)
            sha256 = b64url(hasher.digest())
            if expected is not None and sha256 != expected:
                raise TongbanError("content does not hash to the blob name",
                                   code=ErrorCode.DIGEST_MISMATCH)
            if file is None or temp is None:
                return StoredBlob(sha256, size, created=False)
            created = await _in_thread(self._commit, file, temp, self.path(sha256))
            file, temp = None, None
            return StoredBlob(sha256, size, created=created)
        finally:
            if file is not None or temp is not None:
                await _in_thread(self._discard, file, temp)

    @staticmethod
    def _create_temp(temp: Path) -> io.FileIO:
        temp.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return io.FileIO(fd, "wb", closefd=True)

    def _commit(self, file: io.FileIO, temp: Path, final: Path) -> bool:
        try:
            os.fsync(file.fileno())
        finally:
            file.close()
        if final.exists():  # another upload of the same content won; keep its file
            temp.unlink()
            return False
        shard_is_new = not final.parent.exists()
        final.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(temp, final)
        _fsync_dir(final.parent)
        if shard_is_new:
            _fsync_dir(self.root)
        return True

    @staticmethod
    def _discard(file: io.FileIO | None, temp: Path | None) -> None:
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
        if temp is not None:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    async def read(self, sha256: str, *, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        """Stream a held blob (`BlobNotFound` if it is not held)."""
        path = self.path(sha256)
        try:
            file = await _in_thread(io.FileIO, path, "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256} is not held") from None
        try:
            while True:
                chunk = await _in_thread(file.read, chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            await _in_thread(file.close)
