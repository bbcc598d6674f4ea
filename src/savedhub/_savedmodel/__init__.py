"""What a SavedModel is, for every side of savedhub.

``folder`` owns what a SavedModel folder holds on disk (graph file names, the
variables shards, the TF1 Hub marker file) and the three answers to a
SavedModel found one folder down; it needs no TensorFlow. ``protos`` parses
``saved_model.pb`` (and a TF1 Hub module's marker) for ``info``, ``lint`` and
the server's inspector, without restoring the model.
"""
