"""Explanations: drawing them (`figures`, `render`), measuring them against ground truth
(`metrics`), and the 3D Grad-CAM they are compared with (`gradcam`).
`python -m stabn_tf.explain` writes Figure 3 for videos, frame folders or TFRecord clips."""
