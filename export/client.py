# `python export/client.py` or `python -m export.client` from the repository root is the
# command `python -m stabn_tf.export.client` (console script `stabn-client`), which needs no
# TensorFlow.
from stabn_tf.export.client import command

if __name__ == "__main__":
    command()
