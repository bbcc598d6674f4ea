"""Every error savedhub raises, in one tree.

Each class also inherits the builtin exception a caller would catch without
knowing savedhub, so ``except FileNotFoundError`` keeps working::

    SavedhubError
    ├── InvalidHandleError (ValueError)      the handle is not something we can load
    ├── ModelNotFoundError (FileNotFoundError)   nothing at that path or URL
    ├── NotASavedModelError (ValueError)     a path exists but holds no SavedModel
    ├── NotCachedError (FileNotFoundError)   offline, and the handle is not cached
    ├── TransferError (OSError)              the network or server failed
    │   ├── IntegrityError                   bytes arrived but do not match their digest
    │   └── NotAnArchiveError                an HTML page or other non-archive body arrived
    ├── UnsafeArchiveError (ValueError)      an archive tries to escape or explode
    ├── CacheLockTimeout (TimeoutError)      another process held the entry too long
    ├── CacheFullError (OSError)             the disk holding the cache is full
    ├── MissingPackageError (ImportError)    a feature needs a package that is not installed
    │   └── MissingOpError                   the model needs ops of a package not installed
    ├── ConfigError (ValueError)             a setting (environment variable) has a bad value
    ├── UnsupportedSourceError (ValueError)  savedhub convert cannot convert that folder
    ├── OutputExistsError (FileExistsError)  the output folder exists and is not empty
    ├── PublishError (RuntimeError)          a hub refused a push (token, version exists, lint)
    ├── PackError (ValueError)               a folder cannot be packed (lint errors, output inside)
    ├── KerasLayerError (ValueError)         a KerasLayer argument or use is wrong
    │   the hub server's own (``savedhub serve``):
    ├── InvalidNameError (ValueError)        a publisher, model or version name it refuses
    ├── UploadRejected (ValueError)          an upload is not a publishable model (HTTP 422)
    ├── InspectionFailed (RuntimeError)      the inspector could not read an uploaded model
    ├── VersionExistsError (FileExistsError) the version is already published
    ├── MalformedRecordError (ValueError)    a version record (metadata.json) is not one we read
    └── StorageError (OSError)               the storage backend failed

Every message names the handle, URL or path it is about and says the fix.
The message is the only positional argument, so ``str(error)`` is the message
even for the ``OSError`` family.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class SavedhubError(Exception):
    """Root of all savedhub errors."""


class _AboutHandle(SavedhubError):
    """An error about one handle, kept as ``.handle``."""

    def __init__(self, message: str, handle: object = None) -> None:
        super().__init__(message)
        self.handle = handle


class _AboutPath(SavedhubError):
    """An error about one local path, kept as ``.path``."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class InvalidHandleError(_AboutHandle, ValueError):
    """The handle is of a type or form savedhub cannot load."""


class ModelNotFoundError(_AboutHandle, FileNotFoundError):
    """Nothing exists where the handle points."""


class NotASavedModelError(_AboutHandle, ValueError):
    """The handle points at something that is not a SavedModel directory."""


class NotCachedError(_AboutHandle, FileNotFoundError):
    """Offline mode is on and the handle has no complete cache entry."""


class TransferError(SavedhubError, OSError):
    """Downloading failed: connection, timeout, HTTP status or an unexpected body."""

    def __init__(self, message: str, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class IntegrityError(TransferError):
    """The downloaded bytes do not match the digest the server announced."""


class NotAnArchiveError(TransferError):
    """The server answered with an HTML page or another body that is not a tar archive."""


class UnsafeArchiveError(SavedhubError, ValueError):
    """An archive member would escape its folder, is a device, or the archive is too large."""

    def __init__(self, message: str, member: str | None = None) -> None:
        super().__init__(message)
        self.member = member


class CacheLockTimeout(SavedhubError, TimeoutError):
    """Another process kept a cache entry locked for longer than allowed."""

    def __init__(self, message: str, lock_path: str | None = None) -> None:
        super().__init__(message)
        self.lock_path = lock_path


class CacheFullError(_AboutPath, OSError):
    """Writing into the cache failed because its disk is full (ENOSPC)."""


class MissingPackageError(SavedhubError, ImportError):
    """A feature needs a Python package that is not installed (``.package`` names it)."""

    def __init__(self, message: str, package: str | None = None) -> None:
        super().__init__(message)
        self.package = package


class MissingOpError(MissingPackageError):
    """The SavedModel uses TensorFlow ops that an uninstalled package provides."""

    def __init__(self, message: str, op: str | None = None, package: str | None = None) -> None:
        super().__init__(message, package)
        self.op = op


class ConfigError(SavedhubError, ValueError):
    """A setting has a value savedhub cannot use; ``.name`` is the variable, ``.value`` it."""

    def __init__(self, message: str, name: str | None = None, value: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.value = value


class UnsupportedSourceError(_AboutPath, ValueError):
    """``savedhub convert`` was given a folder that is not a model it can convert."""


class OutputExistsError(_AboutPath, FileExistsError):
    """A command would overwrite a folder that already holds files."""


class KerasLayerError(SavedhubError, ValueError):
    """A KerasLayer was given arguments that cannot work together."""


class CacheWarning(UserWarning):
    """A cache entry was damaged (and fetched again), or a stale lock was taken over."""


class PublishError(SavedhubError, RuntimeError):
    """A hub refused to publish a model: no or wrong token, an existing version,
    a model that fails lint, or an archive over the hub's size limit."""

    def __init__(
        self,
        message: str,
        url: str | None = None,
        status: int | None = None,
        findings: list[dict[str, object]] | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.findings = findings or []


class PackError(_AboutPath, ValueError):
    """``pack`` refused a model folder: it fails lint's errors, the output would
    land inside it, or it holds links to folders or special files."""

    def __init__(
        self, message: str, path: str | None = None, findings: Sequence[object] = ()
    ) -> None:
        super().__init__(message, path)
        self.findings = list(findings)


# -- the hub server's own (``savedhub serve``) ---------------------------------------------


class InvalidNameError(SavedhubError, ValueError):
    """A publisher, model or version name the hub refuses (the message says the rule)."""


class UploadRejected(SavedhubError, ValueError):
    """The upload is not a publishable model; ``findings`` say why (HTTP 422)."""

    def __init__(self, message: str, findings: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.findings = findings or []


class InspectionFailed(SavedhubError, RuntimeError):
    """The model could not be read (the message says why, naming only the upload)."""


class VersionExistsError(SavedhubError, FileExistsError):
    """The version is already published (versions are immutable)."""


class MalformedRecordError(SavedhubError, ValueError):
    """A version record lacks a required field or has one of the wrong type."""


class StorageError(SavedhubError, OSError):
    """The storage backend failed (a disk or object-store error)."""
