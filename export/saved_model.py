# `python -m export.saved_model` from the repository root is the command
# `python -m stabn_tf.export.saved_model` (console script `stabn-export-saved-model`); --help prints
# that module's docstring.
from stabn_tf.export.saved_model import command

if __name__ == "__main__":
    command()
