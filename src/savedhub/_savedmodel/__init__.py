"""What a SavedModel folder is, read without TensorFlow.

``protos`` parses ``saved_model.pb`` (and a TF1 Hub module's ``tfhub_module.pb``)
with a minimal protobuf reader, so ``info``, ``lint`` and the server never need
TensorFlow.
"""
