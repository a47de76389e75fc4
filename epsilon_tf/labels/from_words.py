"""Label spaces from label names and word vectors (your own vocabulary).

The pieces behind `python -m epsilon_tf.tools.make_label_space`:

- `read_label_names`: label names from a text file (one per line; blank
  lines and lines starting with "#" skipped) or from a CSV whose header
  names a `name` (or `label`) column and optionally a `seen` / `unseen` /
  `split` column that marks each label.
- `read_word_vectors`: the vectors of the words you ask for, streamed line
  by line from a word-vector text file in the GloVe format (`word v1 ...
  vE` per line) or the word2vec text format (the same after a first line
  `count dim`), optionally gzip-compressed. Only the vectors asked for are
  kept, so a 1 GB file is never loaded whole.
- `embed_names`: one vector per label name. A name with a vector of its
  own (`new_york` in word2vec files) takes it; otherwise its words (split
  at spaces and "_") are looked up, first as written, then lower-cased,
  and averaged ("golden retriever", "street_art"). Names left without a
  vector are refused in one error that lists them.
- `label_space_from_words`: all of it, into a `LabelSpace`.

Example (a `{word: vector}` dict here; usually the path of a GloVe file):

>>> space = label_space_from_words(
...     ["cat", "golden retriever"],
...     {"cat": [1.0, 0.0], "golden": [0.0, 1.0], "retriever": [0.0, 3.0]},
...     unseen=["golden retriever"])
>>> space.vectors[1].tolist()
[0.0, 2.0]
>>> space.unseen.tolist()
[1]
"""

import csv
import gzip
import os
import re

import numpy as np

from epsilon_tf.errors import InputDataError
from epsilon_tf.labels.label_space import LabelSpace

_WORD_SPLIT = re.compile(r"[\s_]+")
_SPLIT_WORDS = {"seen": False, "train": False, "unseen": True, "test": True}
_TRUTH_WORDS = {"1": True, "true": True, "yes": True, "0": False,
                "false": False, "no": False}
NAME_COLUMNS = ("name", "label")
MARK_COLUMNS = ("unseen", "seen", "split")


def _read_text(path, what):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not a {what}")
    with open(path, encoding="utf-8-sig") as f:
        return f.read()


def _check_unique(names, path):
    seen = set()
    repeated = [n for n in names if n in seen or seen.add(n)]
    if repeated:
        raise InputDataError(
            f"{path}: label names must be unique. Repeated: "
            f"{sorted(set(repeated))[:10]}"
        )


def read_label_names(path):
    """Reads label names and, from a CSV, which of them are unseen.

    Args:
        path: str. A text file (one name per line) or a `.csv` file with a
            header naming `name` or `label`, and optionally `unseen`
            (1/true/yes for an unseen label), `seen` (1/true/yes for a seen
            one) or `split` ("seen"/"train" or "unseen"/"test").

    Returns:
        `(names, unseen)`: a list of str and, from a CSV with a mark
        column, a list of the unseen names (else None).

    Raises:
        InputDataError: no names, a repeated name, a CSV without a name
            column or with a mark that is not understood (line named).
    """
    text = _read_text(path, "label names file")
    if not path.lower().endswith(".csv"):
        names = [
            line.strip() for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
        if not names:
            raise InputDataError(f"{path}: no label names (one per line)")
        _check_unique(names, path)
        return names, None
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    raw_fields = reader.fieldnames or []
    by_lower = dict(zip(fields, raw_fields))
    name_col = next((by_lower[c] for c in NAME_COLUMNS if c in by_lower),
                    None)
    if name_col is None:
        raise InputDataError(
            f"{path}: the CSV header must name a `name` (or `label`) column "
            f"and optionally `unseen`, `seen` or `split`. Received: "
            f"{raw_fields}"
        )
    mark = next((c for c in MARK_COLUMNS if c in by_lower), None)
    names, unseen = [], []
    for line, row in enumerate(reader, start=2):
        name = (row.get(name_col) or "").strip()
        if not name:
            raise InputDataError(f"{path}, line {line}: empty label name")
        names.append(name)
        if mark is None:
            continue
        cell = (row.get(by_lower[mark]) or "").strip().lower()
        is_unseen = _is_unseen(mark, cell)
        if is_unseen is None:
            raise InputDataError(
                f"{path}, line {line}: column `{by_lower[mark]}` must be "
                "seen/unseen, train/test, 1/0, true/false or yes/no. "
                f"Received: {cell!r}"
            )
        if is_unseen:
            unseen.append(name)
    if not names:
        raise InputDataError(f"{path}: no label names below the header")
    _check_unique(names, path)
    return names, (unseen if mark is not None else None)


def _is_unseen(column, cell):
    """True/False from a mark cell of `column`, None when not understood."""
    if cell in _SPLIT_WORDS:
        return _SPLIT_WORDS[cell]
    if cell in _TRUTH_WORDS and column != "split":
        truth = _TRUTH_WORDS[cell]
        return truth if column == "unseen" else not truth
    return None


def words_of(name):
    """The words of a label name: split at spaces and underscores."""
    return [w for w in _WORD_SPLIT.split(name.strip()) if w]


def _wanted_tokens(names):
    tokens = set()
    for name in names:
        for candidate in (name, name.replace(" ", "_")):
            tokens.add(candidate)
            tokens.add(candidate.lower())
        for word in words_of(name):
            tokens.add(word)
            tokens.add(word.lower())
    return tokens


def _open_text(path):
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def read_word_vectors(path, words):
    """Streams a GloVe / word2vec text file; keeps the vectors of `words`.

    Args:
        path: str. The word-vector text file (may be gzip-compressed).
        words: iterable of str. The tokens to keep.

    Returns:
        `(vectors, dim)`: a dict `{token: float32 array [dim]}` of the
        tokens found, and the file's vector dimension.

    Raises:
        InputDataError: a line whose number of values differs from the
            file's dimension, or values that are not numbers (file and
            line named), or a file without any vector.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"word-vector file not found: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"{path} is a directory, not a word-vector file"
        )
    wanted = set(words)
    found = {}
    dim = None
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip().split(" ")
            if number == 1 and len(parts) == 2 and all(
                p.isdigit() for p in parts
            ):
                dim = int(parts[1])  # word2vec text header: count dim
                continue
            if len(parts) < 2:
                if not line.strip():
                    continue
                raise InputDataError(
                    f"{path}, line {number}: expected a word followed by "
                    "its vector's values (GloVe / word2vec text format)"
                )
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim:
                raise InputDataError(
                    f"{path}, line {number}: {len(parts) - 1} values where "
                    f"the file's vectors have {dim}"
                )
            token = parts[0]
            if token in wanted and token not in found:
                try:
                    found[token] = np.asarray(parts[1:], dtype=np.float32)
                except ValueError:
                    raise InputDataError(
                        f"{path}, line {number}: the values of {token!r} "
                        "are not all numbers"
                    ) from None
    if dim is None:
        raise InputDataError(f"{path}: no word vectors in the file")
    return found, dim


def embed_names(names, vectors, source="the word vectors"):
    """One vector per name from a `{token: vector}` lookup.

    A name's own token (as written, with "_" for spaces, or lower-cased)
    wins; otherwise the mean of its words' vectors (each word as written,
    else lower-cased).

    Raises:
        InputDataError: names without a vector, all listed (with the words
            that are missing), naming `source`.
    """
    rows, missing = [], []
    for name in names:
        own = next(
            (vectors[t] for t in (name, name.replace(" ", "_"),
                                  name.lower(),
                                  name.replace(" ", "_").lower())
             if t in vectors),
            None,
        )
        if own is not None:
            rows.append(own)
            continue
        words = words_of(name)
        found = [vectors.get(w, vectors.get(w.lower())) for w in words]
        absent = [w for w, v in zip(words, found) if v is None]
        if not words or absent:
            missing.append(
                name if not absent or absent == words
                else f"{name} (no {', '.join(absent)})"
            )
            continue
        rows.append(np.mean(np.stack(found), axis=0))
    if missing:
        raise InputDataError(
            f"{len(missing)} label name(s) have no vector in {source}: "
            + ", ".join(repr(m) for m in missing[:30])
            + (f" and {len(missing) - 30} more" if len(missing) > 30 else "")
            + " (rename them, or drop them from the names file)"
        )
    return np.stack(rows).astype(np.float32)


def split_indices(names, unseen=None, seen=None, where="the label names"):
    """`(seen, unseen)` index arrays from lists of unseen or seen names.

    Exactly one of `unseen` / `seen` may be given; with neither, every
    label is seen.

    Raises:
        InputDataError: names that are not labels, or both lists given.
    """
    if unseen is not None and seen is not None:
        raise InputDataError(
            "Mark either the unseen or the seen labels, not both"
        )
    marked = unseen if unseen is not None else seen
    k = len(names)
    if marked is None:
        return np.arange(k), np.zeros(0, np.int64)
    lookup = {n: i for i, n in enumerate(names)}
    unknown = [n for n in marked if n not in lookup]
    if unknown:
        raise InputDataError(
            f"{len(unknown)} marked label(s) are not in {where}: "
            + ", ".join(repr(n) for n in unknown[:20])
        )
    chosen = np.zeros(k, bool)
    chosen[[lookup[n] for n in marked]] = True
    is_unseen = chosen if unseen is not None else ~chosen
    return np.flatnonzero(~is_unseen), np.flatnonzero(is_unseen)


def label_space_from_words(names, vectors, unseen=None, seen=None,
                           source=None):
    """A `LabelSpace` from names and word vectors.

    Args:
        names: sequence of str. The labels, in column order.
        vectors: a float array [len(names), E] aligned with `names`, a
            `{token: vector}` dict, or the path of a GloVe / word2vec text
            file (streamed; see `read_word_vectors`).
        unseen: sequence of str or None. The labels never trained on.
        seen: sequence of str or None. The labels trained on (the others
            are unseen); give `unseen` or `seen`, not both. With neither,
            every label is seen.
        source: str or None. How `vectors` is named in messages.

    Returns:
        `LabelSpace`.

    Raises:
        InputDataError: names without a vector, an array whose number of
            rows differs from the number of names, marks naming unknown
            labels.
    """
    names = [str(n) for n in names]
    if isinstance(vectors, (str, os.PathLike)):
        path = os.fspath(vectors)
        lookup, _ = read_word_vectors(path, _wanted_tokens(names))
        matrix = embed_names(names, lookup, source or path)
    elif isinstance(vectors, dict):
        matrix = embed_names(names, vectors, source or "the vectors")
    else:
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(names):
            raise InputDataError(
                f"{source or 'The vector array'} must be [number of names, "
                f"dim] = [{len(names)}, E], one row per name in order. "
                f"Received: shape={matrix.shape}"
            )
    seen_idx, unseen_idx = split_indices(names, unseen, seen)
    try:
        return LabelSpace(tuple(names), matrix, seen_idx, unseen_idx)
    except ValueError as e:
        raise InputDataError(f"{source or 'vectors'}: {e}") from None
