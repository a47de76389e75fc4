"""Reading, writing and generating examples (see base.py for the reader
contract): records/, readers/, worlds/, and the tf.data pipeline on top."""
