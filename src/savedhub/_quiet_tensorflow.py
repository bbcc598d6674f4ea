"""Keep TensorFlow's start-up lines out of the ``savedhub`` command's output.

Importing TensorFlow prints oneDNN, CUDA and CPU-feature notes from C++ before
its logging is configured, so ``TF_CPP_MIN_LOG_LEVEL`` cannot silence them.
The command therefore raises TensorFlow's log threshold, quiets the ``absl``
and ``tensorflow`` Python loggers, and runs the first ``import tensorflow``
(whichever module triggers it, whenever) with file descriptor 2 captured;
afterwards it writes back every captured line except the known start-up
notes, so a real error printed during the import is still shown.
``savedhub --verbose`` skips all of this.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType

# Lines TensorFlow prints while it starts, e.g.
#   WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
#   I0000 00:00:1795802773.222025   15085 port.cc:153] oneDNN custom operations are on. ...
#   I0000 00:00:1795802773.378292   15085 cpu_feature_guard.cc:227] This TensorFlow binary ...
#   To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild ...
# Only informational and warning lines: an E(rror) or F(atal) line is shown.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.]+\.(cc|h):\d+\] "
    r"|To enable the following instructions: )"
)


def is_start_up_noise(line: str) -> bool:
    """True for a line TensorFlow prints at start-up that a command's user need not see."""
    return bool(_NOISE.match(line))


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Capture file descriptor 2, then write back what is not start-up noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace")
            kept = [line for line in text.splitlines(True) if not is_start_up_noise(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        if module.__spec__ is not None:  # TensorFlow sees its own loader, not this wrapper
            module.__spec__.loader = self._loader
        module.__loader__ = self._loader
        with _filtered_stderr():
            self._loader.exec_module(module)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Wraps the first import of ``tensorflow`` in :func:`_filtered_stderr`, then leaves."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow() -> None:
    """Silence TensorFlow's start-up and log lines for the rest of this process.

    TensorFlow's C++ reads its log threshold only from the environment, so this
    sets ``TF_CPP_MIN_LOG_LEVEL``. It does nothing when TensorFlow was imported
    already (by a program that calls :func:`savedhub.cli.main` itself): the
    start-up lines are printed by then, and its logging is that program's.
    """
    if "tensorflow" in sys.modules:
        return
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())
