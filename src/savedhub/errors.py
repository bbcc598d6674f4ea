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
    ├── MissingOpError (ImportError)         the model needs ops of a package not installed
    ├── UnsupportedSourceError (ValueError)  savedhub convert cannot convert that folder
    ├── OutputExistsError (FileExistsError)  the output folder exists and is not empty
    ├── PublishError (RuntimeError)          a hub refused a push (token, version exists, lint)
    ├── PackError (ValueError)               a folder cannot be packed (lint errors, output inside)
    └── KerasLayerError (ValueError)         a KerasLayer argument or use is wrong
        └── KerasLayerConfigError (NotImplementedError)  no config for a layer without a handle

Every message names the handle, URL or path it is about and says the fix.
"""

from __future__ import annotations

from collections.abc import Sequence


class SavedhubError(Exception):
    """Root of all savedhub errors."""


class InvalidHandleError(SavedhubError, ValueError):
    """The handle is of a type or form savedhub cannot load."""

    def __init__(self, message: str, handle: object = None) -> None:
        super().__init__(message)
        self.handle = handle


class ModelNotFoundError(SavedhubError, FileNotFoundError):
    """Nothing exists where the handle points."""

    def __init__(self, message: str, handle: object = None) -> None:
        super().__init__(message)
        self.handle = handle

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return str(self.args[0])


class NotASavedModelError(SavedhubError, ValueError):
    """The handle points at something that is not a SavedModel directory."""

    def __init__(self, message: str, handle: object = None) -> None:
        super().__init__(message)
        self.handle = handle


class NotCachedError(SavedhubError, FileNotFoundError):
    """Offline mode is on and the handle has no complete cache entry."""

    def __init__(self, message: str, handle: object = None) -> None:
        super().__init__(message)
        self.handle = handle

    def __str__(self) -> str:
        return str(self.args[0])


class TransferError(SavedhubError, OSError):
    """Downloading failed: connection, timeout, HTTP status or an unexpected body."""

    def __init__(self, message: str, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status

    def __str__(self) -> str:
        return str(self.args[0])


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


class CacheFullError(SavedhubError, OSError):
    """Writing into the cache failed because its disk is full (ENOSPC)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


class MissingOpError(SavedhubError, ImportError):
    """The SavedModel uses TensorFlow ops that an uninstalled package provides."""

    def __init__(self, message: str, op: str | None = None, package: str | None = None) -> None:
        super().__init__(message)
        self.op = op
        self.package = package


class UnsupportedSourceError(SavedhubError, ValueError):
    """``savedhub convert`` was given a folder that is not a model it can convert."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class OutputExistsError(SavedhubError, FileExistsError):
    """A command would overwrite a folder that already holds files."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


class KerasLayerError(SavedhubError, ValueError):
    """A KerasLayer was given arguments that cannot work together."""


class KerasLayerConfigError(KerasLayerError, NotImplementedError):
    """get_config of a KerasLayer built from an already loaded object: it has no
    handle to save. A NotImplementedError, as in tensorflow_hub, which is what
    makes tf.saved_model.save fall back to saving without the config."""


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


class PackError(SavedhubError, ValueError):
    """``pack`` refused a model folder: it fails lint's errors, the output would
    land inside it, or it holds links to folders or special files."""

    def __init__(
        self, message: str, path: str | None = None, findings: Sequence[object] = ()
    ) -> None:
        super().__init__(message)
        self.path = path
        self.findings = list(findings)
