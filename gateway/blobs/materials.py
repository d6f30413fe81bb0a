"""What the case code calls when a clerk or the portal hands over a material.

    att = await store_blob(store, upload_stream, media_type="application/pdf", name="户口簿.pdf")
    await enqueue(conn, repo, dest=..., type_="case.submit", body=..., case_id=...,
                  att=att_claims([att]))

The outbox uploads every blob a message lists before the message itself (PROTOCOL.md §5).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

from gateway.blobs.store import BlobStore
from gateway.federation.messages import Attachment
from trust.errors import ErrorCode, TongbanError

MAX_NAME_LENGTH = 255
MAX_MEDIA_TYPE_LENGTH = 127


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def store_blob(store: BlobStore, data: bytes | AsyncIterable[bytes], *,
                     media_type: str = "application/octet-stream", name: str = "",
                     content_length: int | None = None) -> Attachment:
    """Store a material (streamed, size-limited by `materials.max_bytes`) and describe it.

    Raises 413 `too-large` past the limit (nothing is kept). Storing the same content twice
    is harmless and answers the same `sha256`.
    """
    if len(name) > MAX_NAME_LENGTH or len(media_type) > MAX_MEDIA_TYPE_LENGTH or \
            "/" not in media_type:
        raise TongbanError("a material needs a media type (type/subtype) and a name of at most "
                           f"{MAX_NAME_LENGTH} characters", code=ErrorCode.INVALID_BODY)
    chunks = _one(data) if isinstance(data, bytes) else data
    stored = await store.write(chunks, content_length=content_length)
    return Attachment(sha256=stored.sha256, size=stored.size, media_type=media_type, name=name)


def att_claim(attachment: Attachment) -> dict[str, Any]:
    """One entry of a message's `att` claim."""
    return {"sha256": attachment.sha256, "size": attachment.size,
            "media_type": attachment.media_type, "name": attachment.name}


def att_claims(attachments: Iterable[Attachment]) -> list[dict[str, Any]]:
    """The `att` claim of a message, for `outbox.enqueue(..., att=...)`."""
    return [att_claim(a) for a in attachments]
