# `python -m export.tflite` from the repository root is the command
# `python -m stabn_tf.export.tflite` (console script `stabn-export-tflite`); --help prints
# that module's docstring.
from stabn_tf.export.tflite import command

if __name__ == "__main__":
    command()
