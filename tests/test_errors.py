"""The one error tree: every class savedhub raises hangs under SavedhubError,
keeps the builtin a caller without savedhub would catch, and prints its message."""

from __future__ import annotations

import inspect

import pytest

import savedhub
from savedhub import errors


def _error_classes() -> list[type[BaseException]]:
    return [
        cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, BaseException) and not name.startswith("_")
    ]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_is_a_savedhub_error_and_prints_its_message(
    cls: type[BaseException],
) -> None:
    if issubclass(cls, Warning):
        return
    assert issubclass(cls, errors.SavedhubError)
    error = cls("the model at /x is damaged; run savedhub cache rm /x")
    assert str(error) == "the model at /x is damaged; run savedhub cache rm /x"
    assert cls.__name__ in errors.__doc__, f"{cls.__name__} is missing from the drawn tree"


def test_the_servers_errors_are_the_same_classes() -> None:
    from savedhub.server import inspector, names, publish, storage

    assert names.InvalidNameError is errors.InvalidNameError
    assert publish.UploadRejected is errors.UploadRejected
    assert inspector.InspectionFailed is errors.InspectionFailed
    assert storage.VersionExistsError is errors.VersionExistsError
    with pytest.raises(ValueError, match="not allowed"):
        names.check_name("model", "../etc")


def test_builtin_families_and_context_attributes() -> None:
    missing = savedhub.ModelNotFoundError("no model at /m", handle="/m")
    assert isinstance(missing, FileNotFoundError) and missing.handle == "/m"
    full = savedhub.CacheFullError("disk full under /c", "/c")
    assert isinstance(full, OSError) and full.path == "/c"
    op = savedhub.MissingOpError("needs tensorflow-text", op="Wordpiece", package="tensorflow-text")
    assert isinstance(op, savedhub.MissingPackageError) and isinstance(op, ImportError)
    assert (op.op, op.package) == ("Wordpiece", "tensorflow-text")
    assert isinstance(errors.VersionExistsError("a/b/1 exists"), FileExistsError)
