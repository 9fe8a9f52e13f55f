"""Training: the recipe (optimizer, schedule, losses), callbacks, distribution strategies and
`trainer.train`, the library behind `python -m stabn_tf.train`."""
