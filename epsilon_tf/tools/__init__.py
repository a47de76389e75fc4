"""Command-line tools (`python -m epsilon_tf.tools.<name>`)."""
