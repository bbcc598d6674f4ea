"""The part of ``hub.KerasLayer`` that does not depend on which Keras it is.

``HubLayerBase`` comes first in each layer's bases (before the Keras
``Layer``): it takes the original's constructor arguments, loads the model
(from its handle, or from the ``.keras`` file that embeds it), and owns the
trainability check, the config and the ``.keras`` assets. Each Keras variant
adds how it tracks weights, losses and the ``training`` flag.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from savedhub.errors import (
    KerasLayerError,
    ModelNotFoundError,
    NotASavedModelError,
    NotCachedError,
    TransferError,
)
from savedhub.keras_layer import _keras_file
from savedhub.keras_layer._common import HubCallable

logger = logging.getLogger("savedhub")


class HubLayerBase:
    """Shared constructor, config and ``.keras`` assets of both KerasLayers."""

    _hub: HubCallable
    # Provided by the Keras Layer each variant also derives from.
    trainable: bool
    trainable_weights: list[Any]
    # Set once the zero-trainable-weights error has been logged for this layer.
    _warned_no_trainable = False

    def __init__(
        self,
        handle: Any,
        trainable: bool = False,
        arguments: Mapping[str, Any] | None = None,
        _sentinel: None = None,
        tags: Sequence[str] | None = None,
        signature: str | None = None,
        signature_outputs_as_dict: bool | None = None,
        output_key: str | None = None,
        output_shape: Any = None,
        load_options: Any = None,
        **kwargs: Any,
    ) -> None:
        if _sentinel is not None:
            raise TypeError("KerasLayer takes handle, trainable and arguments positionally only.")
        # Written by get_config: the fingerprint of the SavedModel that
        # save_assets embeds in a .keras file (see _keras_file).
        embedded = kwargs.pop("embedded_model", None)
        # Written by get_config for a layer made from a function of a loaded
        # object (``hub.KerasLayer(hub.load(url).tokenize)``): which function.
        loaded_attribute = kwargs.pop("loaded_attribute", None)
        self._hub = self._open(
            handle,
            embedded,
            arguments=arguments,
            signature=signature,
            signature_outputs_as_dict=signature_outputs_as_dict,
            output_key=output_key,
            output_shape=output_shape,
            load_options=load_options,
            tags=tags,
            loaded_attribute=loaded_attribute,
        )
        spec = self._hub.input_spec()
        if spec is not None:
            # The layer's dtype is what the SavedModel takes (strings, token
            # ids, float32), like Keras' own preprocessing layers: Sequential
            # gives its Input that dtype, and no dtype policy (mixed_float16)
            # casts the inputs into a dtype the traced function refuses.
            kwargs.setdefault("dtype", spec.dtype.name)
        self._setup_layer(trainable, **kwargs)
        # A tracked attribute keeps the loaded object (its tables, assets and
        # functions) reachable when the containing model is exported.
        self._hub_object = self._hub.loaded if self._hub.root is None else self._hub.root

    def _setup_layer(self, trainable: bool, **kwargs: Any) -> None:
        """Initialise the Keras Layer and track the model's weights and losses."""
        raise NotImplementedError

    @staticmethod
    def _keras_safe_mode() -> bool | None:
        """Keras' safe mode while it rebuilds a layer from a file: True, False, or
        None outside of loading. Each Keras variant reads its own."""
        raise NotImplementedError

    @classmethod
    def _open(cls, handle: Any, embedded: dict[str, Any] | None, **arguments: Any) -> HubCallable:
        """Load by handle; when that fails for a layer rebuilt from a .keras
        file, use the SavedModel embedded in that file, if safe mode allows."""
        key = _keras_file.checked_fingerprint((embedded or {}).get("fingerprint"))
        try:
            return HubCallable(handle, **arguments)
        except (ModelNotFoundError, NotASavedModelError, NotCachedError, TransferError) as exc:
            if not key:
                raise
            copy = cls._embedded_copy(handle, key, exc)
        hub = HubCallable(copy, **arguments)
        hub.handle = handle  # the config keeps naming the model, not our copy
        return hub

    @classmethod
    def _embedded_copy(cls, handle: Any, key: str, exc: Exception) -> str:
        """The folder of the SavedModel a .keras file carries for this layer.

        Loading a SavedModel runs the TensorFlow graph inside it, which is
        what Keras' safe mode guards against (it refuses its own TFSMLayer the
        same way): a model taken from the file, or from the cache copy of one,
        needs safe_mode=False. A handle that resolves loads as it always did.
        """
        archive = _keras_file.open_keras_archive()
        cached = _keras_file.cached_copy(key)
        if archive is None and cached is None:
            raise KerasLayerError(
                f"KerasLayer({handle!r}) cannot load its model: {exc} It is not in the "
                "cache either. Load the .keras file that embeds it with "
                "keras.models.load_model(path, safe_mode=False), or make the handle reachable."
            ) from exc
        if cls._keras_safe_mode() is not False:
            raise KerasLayerError(
                f"KerasLayer({handle!r}) cannot load its model by handle ({exc}). The .keras "
                "file carries a copy of that SavedModel, but loading a SavedModel runs the "
                "TensorFlow graph inside it, which Keras' safe mode refuses for a file. If "
                "you trust this file, load it with load_model(path, safe_mode=False), or "
                "call keras.config.enable_unsafe_deserialization() first (tf_keras: "
                "safe_mode=False); or make the handle reachable again."
            ) from exc
        copy = cached or (_keras_file.install_from_archive(archive, key) if archive else None)
        if copy is None:
            raise KerasLayerError(
                f"KerasLayer({handle!r}) cannot load its model by handle ({exc}), and the "
                f".keras file being loaded does not contain the SavedModel {key} that its "
                "config names: the file is damaged. Make the handle reachable, or save the "
                "model again."
            ) from exc
        return copy

    def _check_trainability(self) -> None:
        """Raise or log about ``trainable=True`` when the layer is called, not
        before: ``trainable`` can change until then (tensorflow_hub's rule)."""
        if not self.trainable:
            return
        self._hub.check_trainable(True)
        # Valid, but suspicious: say so once per layer.
        if not self.trainable_weights and not self._warned_no_trainable:
            logger.error("hub.KerasLayer is trainable but has zero trainable weights.")
            self._warned_no_trainable = True

    @property
    def resolved_object(self) -> Any:
        """The object ``hub.load`` returned for this layer's handle."""
        return self._hub.loaded

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()  # type: ignore[misc]
        config.update(self._hub.config())
        if self._hub.path is not None:
            config["embedded_model"] = {"fingerprint": _keras_file.fingerprint(self._hub.path)}
        return config

    def save_assets(self, dir_path: str) -> None:
        """Embed the SavedModel in the .keras file, so the file loads anywhere."""
        key = _keras_file.fingerprint(self._hub.path) if self._hub.path else None
        if key and self._hub.path:
            target = os.path.join(dir_path, _keras_file.folder_name(key))
            _keras_file.copy_tree(self._hub.path, target)

    def load_assets(self, dir_path: str) -> None:
        """Nothing to do: the model was loaded when the layer was rebuilt."""
