"""The part of ``hub.KerasLayer`` that does not depend on which Keras it is.

``HubLayerBase`` comes first in each layer's bases (before the Keras
``Layer``): it takes the original's constructor arguments, loads the model
(from its handle, or from the ``.keras`` file that embeds it), and owns the
trainability check, the config and the ``.keras`` assets. Each Keras variant
adds how it tracks weights, losses and the ``training`` flag.
"""

from __future__ import annotations

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


class HubLayerBase:
    """Shared constructor, config and ``.keras`` assets of both KerasLayers."""

    _hub: HubCallable

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
            trainable=trainable,
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
    def _open(handle: Any, embedded: dict[str, Any] | None, **arguments: Any) -> HubCallable:
        """Load by handle; when that fails for a layer rebuilt from a .keras
        file, use the SavedModel embedded in that file."""
        try:
            return HubCallable(handle, **arguments)
        except (ModelNotFoundError, NotASavedModelError, NotCachedError, TransferError) as exc:
            key = (embedded or {}).get("fingerprint")
            if not key:
                raise
            copy = _keras_file.stored_copy(key) or _keras_file.from_open_archive(key)
            if copy is None:
                raise KerasLayerError(
                    f"KerasLayer({handle!r}) cannot load its model: {exc} It is not in the "
                    "cache either. Load the .keras file that embeds it with "
                    "keras.models.load_model(path), or make the handle reachable."
                ) from exc
        hub = HubCallable(copy, **arguments)
        hub.handle = handle  # the config keeps naming the model, not our copy
        return hub

    @property
    def trainable(self) -> bool:
        return bool(super().trainable)  # type: ignore[misc]

    @trainable.setter
    def trainable(self, value: bool) -> None:
        hub = getattr(self, "_hub", None)  # unset while the Keras Layer initialises
        if hub is not None:
            hub.check_trainable(bool(value))
        super(HubLayerBase, type(self)).trainable.fset(self, value)  # type: ignore[misc]

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
