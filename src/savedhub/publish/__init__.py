"""The publisher's tools: check, describe, pack and upload a SavedModel.

``lint`` checks a folder against the Reusable SavedModel interface, ``info``
describes one without restoring it, ``pack`` writes a reproducible hub archive
and ``push`` uploads to a hub server. None of them restores the model.
"""
