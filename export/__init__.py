"""Deployment entry points, run from the repository root (not installed as a package):

- `python -m export.saved_model`: a SavedModel for TF Serving, `<dir>/<name>/<version>/`.
- `python -m export.tflite`: a TFLite model (float32, float16, dynamic, int8, int16x8) and
  its config `<stem>.json` beside it.
- `python -m export.openvino`: an OpenVINO IR and its config `<stem>.json` beside it.
- `python -m export.client`: a TF Serving REST client that needs no TensorFlow.

Each runs the command of the same name in `stabn_tf.export` (installed as the console
scripts `stabn-export-saved-model`, `stabn-export-tflite`, `stabn-export-openvino` and
`stabn-client`), which parses flags and calls the library (`stabn_tf.deploy`,
`stabn_tf.serving_client`).
"""
