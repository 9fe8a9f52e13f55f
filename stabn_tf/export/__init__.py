"""The deployment commands; each only parses flags and calls `stabn_tf.deploy` (or, for the
REST client, `stabn_tf.serving_client`).

- `python -m stabn_tf.export.saved_model` (`stabn-export-saved-model`): a SavedModel for TF
  Serving, `<dir>/<name>/<version>/`.
- `python -m stabn_tf.export.tflite` (`stabn-export-tflite`): a TFLite model and its config.
- `python -m stabn_tf.export.openvino` (`stabn-export-openvino`): an OpenVINO IR and its
  config.
- `python -m stabn_tf.export.client` (`stabn-client`): a TF Serving REST client that needs
  no TensorFlow.

`python -m export.<name>` from the repository root runs the same commands.
"""
