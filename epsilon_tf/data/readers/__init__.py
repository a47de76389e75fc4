"""The readers of the native, LESA and BiAM layouts, label files and
word-vector pickles."""
