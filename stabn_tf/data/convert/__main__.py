"""`python -m stabn_tf.data.convert`: the converter's command line (`cli`)."""

from stabn_tf.data.convert.cli import command

if __name__ == "__main__":
    command()
