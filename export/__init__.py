"""Deployment entry points, run from the repository root (not installed as a package):

- `python -m export.saved_model`: a SavedModel for TF Serving, `<dir>/<name>/<version>/`.
- `python -m export.tflite`: a TFLite model (float32, float16, dynamic, int8, int16x8) and
  its config `<stem>.json` beside it.
- `python export/client.py`: a TF Serving REST client that needs no TensorFlow.

They parse flags and call `stabn_tf.deploy`, where the logic lives.
"""
