"""The client path of one load: parse a handle, resolve it to a local folder, load it.

``handles`` parses and normalises a handle, ``resolver`` turns it into a local
folder (``remote`` fetches and caches remote ones through ``transfer``, ``archive``
and ``cache``), ``loading`` restores it with TensorFlow, and ``ops`` imports the
op libraries a model needs. Only ``loading`` and ``ops`` import TensorFlow.
"""
