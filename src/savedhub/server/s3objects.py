"""Reading and writing single S3 objects in bounded memory: ranged reads, multipart writes.

The hub never holds an archive whole: :class:`RangedReader` serves any byte
range of a stored object as one streamed ``GET`` with ``Range`` (a seek starts
a new one), and :class:`MultipartWriter` sends an object as it arrives in
parts of :data:`PART_BYTES`, so at most one part is buffered. Both take a boto3
S3 client; this module imports nothing from boto3 itself.
"""

from __future__ import annotations

import io
from typing import Any

# S3 refuses parts under 5 MiB (the last excepted); 8 MiB is boto3's own default part size.
PART_BYTES = 8 * 2**20


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` ('' for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def is_missing(exc: BaseException) -> bool:
    """Whether a botocore error says the object (or bucket) is not there."""
    return error_code(exc) in ("NoSuchKey", "404", "NotFound", "NoSuchBucket")


class RangedReader(io.RawIOBase):
    """A seekable reader of one object: each read continues one streamed ranged GET;
    a seek elsewhere closes it and the next read opens another at the new position."""

    def __init__(self, client: Any, bucket: str, key: str, size: int) -> None:
        super().__init__()
        self._client, self._bucket, self._key, self._size = client, bucket, key, size
        self._position = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        target = max(0, base + offset)
        if target != self._position:
            self._drop_body()
            self._position = target
        return self._position

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        if self._body is None:
            try:
                answer = self._client.get_object(
                    Bucket=self._bucket, Key=self._key, Range=f"bytes={self._position}-"
                )
            except Exception as exc:
                if is_missing(exc):
                    raise FileNotFoundError(f"s3://{self._bucket}/{self._key}") from exc
                raise OSError(f"reading s3://{self._bucket}/{self._key}: {exc}") from exc
            self._body = answer["Body"]
        chunk = self._body.read(wanted)
        buffer[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all the rest for -1), fewer only at the end of the object."""
        if size is None or size < 0:
            size = self._size - self._position
        parts = []
        while size > 0:
            chunk = super().read(size)
            if not chunk:
                break
            parts.append(chunk)
            size -= len(chunk)
        return b"".join(parts)

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop_body()
        super().close()


class MultipartWriter:
    """One object written as a multipart upload while its bytes arrive.

    :meth:`add` buffers; once :attr:`part_ready`, :meth:`send_part` (blocking) uploads
    a part. :meth:`complete` sends the rest and makes the object; :meth:`abort` throws
    the parts away (S3 would otherwise keep and bill them).
    """

    def __init__(self, client: Any, bucket: str, key: str, part_bytes: int = PART_BYTES) -> None:
        self._client, self._bucket, self.key = client, bucket, key
        self._part_bytes = part_bytes
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self.upload_id: str = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def add(self, chunk: bytes) -> None:
        self._buffer += chunk

    @property
    def started(self) -> bool:
        """Whether any byte was given (:meth:`add`) yet."""
        return bool(self._parts or self._buffer)

    @property
    def part_ready(self) -> bool:
        # S3 takes at most 10,000 parts: every 1,000 parts the part grows by part_bytes,
        # so 10,000 parts of 8 MiB and up hold 430 GiB.
        return len(self._buffer) >= self._part_bytes * (1 + len(self._parts) // 1000)

    def send_part(self) -> None:
        """Upload what is buffered as the next part."""
        body = bytes(self._buffer)
        self._buffer.clear()
        number = len(self._parts) + 1
        answer = self._client.upload_part(
            Bucket=self._bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
        )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def complete(self) -> None:
        if self._buffer or not self._parts:
            self.send_part()
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def abort(self) -> None:
        self._buffer.clear()
        self._client.abort_multipart_upload(
            Bucket=self._bucket, Key=self.key, UploadId=self.upload_id
        )
