"""Record-level machinery: globbing, compression, TFRecord framing and
integrity, record streams and counts."""
