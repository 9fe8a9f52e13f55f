"""Explanations: drawing them (`figures`, `render`), measuring them against ground truth
(`metrics`). The 3D Grad-CAM they are compared with is a way of predicting, so the runners
own it (`stabn_tf.inference.gradcam`); this package only reads predictions.
`python -m stabn_tf.explain` writes Figure 3 for videos, frame folders or TFRecord clips."""
