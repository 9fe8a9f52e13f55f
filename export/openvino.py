# `python -m export.openvino` from the repository root is the command
# `python -m stabn_tf.export.openvino` (console script `stabn-export-openvino`); --help prints
# that module's docstring.
from stabn_tf.export.openvino import command

if __name__ == "__main__":
    command()
