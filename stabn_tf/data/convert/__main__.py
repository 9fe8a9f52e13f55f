"""`python -m stabn_tf.data.convert`: the converter's command line (`cli`)."""

from absl import app

from stabn_tf.data.convert import cli

if __name__ == "__main__":
    cli._define_flags()
    app.run(cli.main)
