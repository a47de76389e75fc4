"""Label vocabularies of NUS-WIDE and Open Images, read from release files.

The files come from the LESA / BiAM releases (see `shared/data/README.md`):
text lists with CRLF line ends or a UTF-8 byte-order mark, a CSV whose
display names hold commas inside quotes, and pickles (read with
`safe_pickle.load_pickle`, never plain `pickle`).

NUS-WIDE: seen = the 925 tags of `TagList1k.txt` that are not among the 81
concepts (exact string match, TagList order); unseen = the 81 concepts of
`Concepts81.txt`. The label space puts the seen tags first.

Open Images: seen = the 7,186 trainable MIDs of `classes-trainable.txt`;
unseen = the 400 MIDs of `unseen_labels.pkl` picked by `top_400_unseen.csv`
(in that file's order). Label names are display names from
`class-descriptions.csv`.
"""

import collections
import csv
import dataclasses
import io
import logging
import os

import numpy as np
import tensorflow as tf

from epsilon_tf.data.readers.safe_pickle import load_pickle
from epsilon_tf.labels import LabelSpace

logger = logging.getLogger(__name__)


def _read_text(path):
    path = os.fspath(path)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"Label file not found: {path}")
    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    try:
        # utf-8-sig drops a leading byte-order mark if there is one.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text: {e}") from e


def read_lines(path):
    """Reads a one-item-per-line text file (CRLF, LF and a BOM handled).

    Surrounding whitespace of every line is stripped. Trailing empty lines
    are dropped; an empty line in the middle is an error, since list files
    are positional (line i is label i).

    Args:
        path: str. The text file.

    Returns:
        list of str.
    """
    lines = [line.strip() for line in _read_text(path).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for i, line in enumerate(lines):
        if not line:
            raise ValueError(
                f"{path}: line {i + 1} is empty; every line must hold one "
                "item (the line number is the item's index)"
            )
    return lines


def read_int_lines(path):
    """Reads a text file holding one integer per line.

    Args:
        path: str. The text file (e.g. `top_400_unseen.csv`).

    Returns:
        int64 numpy array.
    """
    values = []
    for i, line in enumerate(read_lines(path)):
        field = line.split(",")[0].strip()
        try:
            values.append(int(field))
        except ValueError:
            raise ValueError(
                f"{path}: line {i + 1} must hold an integer. Received: {line!r}"
            ) from None
    return np.asarray(values, dtype=np.int64)


def read_class_descriptions(path):
    """Reads Open Images `class-descriptions.csv` (`MID,display name` rows).

    Quoted names with commas (`/m/01c_0l,"Ducks, geese and swans"`) and
    doubled quotes are parsed by the `csv` module; names are stripped of
    surrounding whitespace. There is no header row.

    Args:
        path: str. The CSV file.

    Returns:
        dict MID -> display name, in file order.
    """
    text = _read_text(path)
    out = {}
    for row_number, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not any(field.strip() for field in row):
            continue
        if len(row) != 2:
            raise ValueError(
                f"{path}: row {row_number} must have 2 fields (MID, display "
                f"name). Received {len(row)} fields: {row!r}"
            )
        mid, name = row[0].strip(), row[1].strip()
        if mid in out and out[mid] != name:
            raise ValueError(
                f"{path}: MID {mid!r} appears twice with different names "
                f"({out[mid]!r} and {name!r}, row {row_number})"
            )
        out[mid] = name
    return out


def load_word_vectors(path, expected_rows, label_files=(None, None)):
    """Loads a `[array, array]` word-vector pickle and checks its shapes.

    Args:
        path: str. The pickle (read with the restricted unpickler).
        expected_rows: pair of int or None. Rows each array must have
            (None skips the check for that array).
        label_files: pair of str or None. The label file each count comes
            from: a mismatch names both files and both counts (either file
            may be the wrong one).

    Returns:
        tuple of two float32 arrays with the same number of columns.
    """
    obj = load_pickle(path)
    if not isinstance(obj, (list, tuple)) or len(obj) != 2:
        raise ValueError(
            f"{path} must hold a list of two arrays [seen_or_all, unseen]. "
            f"Received: {type(obj).__name__}"
            + (f" of length {len(obj)}" if hasattr(obj, "__len__") else "")
        )
    arrays = []
    for which, (array, rows) in enumerate(zip(obj, expected_rows, strict=True)):
        array = np.asarray(array)
        if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
            raise ValueError(
                f"{path}: entry {which} must be a 2-D numeric array "
                f"[num_labels, embedding_dim]. Received: shape="
                f"{array.shape}, dtype={array.dtype}"
            )
        if rows is not None and array.shape[0] != rows:
            listing = label_files[which]
            if listing is not None:
                raise ValueError(
                    f"The label file {listing} and the word-vector file "
                    f"{path} disagree: {listing} lists {rows} labels, entry "
                    f"{which} of {path} has {array.shape[0]} rows (one row "
                    "per label, in label-file order); one of the two files "
                    "is cut short or is another release's"
                )
            raise ValueError(
                f"{path}: entry {which} has {array.shape[0]} rows but the "
                f"label list has {rows} labels (expected {rows} rows, one "
                "per label, in label-list order)"
            )
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)):
            bad = np.flatnonzero(~np.all(np.isfinite(array), axis=1))
            raise ValueError(
                f"{path}: entry {which} has NaN/Inf in rows {bad[:10]}"
            )
        arrays.append(array)
    if arrays[0].shape[1] != arrays[1].shape[1]:
        raise ValueError(
            f"{path}: the two arrays must have the same embedding size. "
            f"Received: {arrays[0].shape[1]} and {arrays[1].shape[1]}"
        )
    return tuple(arrays)


# ---------------------------------------------------------------------------
# NUS-WIDE


def _nus_wide_lists(tag_list_path, concepts_path):
    tags = read_lines(tag_list_path)
    concepts = read_lines(concepts_path)
    for path, items in ((tag_list_path, tags), (concepts_path, concepts)):
        seen = set()
        dups = [x for x in items if x in seen or seen.add(x)]
        if dups:
            raise ValueError(f"{path}: duplicate entries {dups[:10]}")
    return tags, concepts


def nus_wide_seen_tag_indices(tag_list_path, concepts_path):
    """TagList1k positions of the seen NUS-WIDE labels, in seen order.

    Seen labels are the tags that are not concepts (exact string match);
    the result maps a 1,000-value TagList vector (e.g. LESA's `label_1k`)
    to the seen labels: `seen_values = label_1k[indices]`.

    Args:
        tag_list_path: str. `TagList1k.txt`.
        concepts_path: str. `Concepts81.txt`.

    Returns:
        int64 array [num_seen] (925 for the release files).
    """
    tags, concepts = _nus_wide_lists(tag_list_path, concepts_path)
    concept_set = set(concepts)
    return np.asarray(
        [i for i, t in enumerate(tags) if t not in concept_set],
        dtype=np.int64,
    )


def nus_wide_label_space(tag_list_path, concepts_path, word_vectors_path):
    """The NUS-WIDE label space: 925 seen tags then the 81 concepts.

    Args:
        tag_list_path: str. `TagList1k.txt` (1,000 tags).
        concepts_path: str. `Concepts81.txt` (81 concepts, the unseen
            labels).
        word_vectors_path: str. Pickle `[array(1000, E) in TagList order,
            array(81, E) in Concepts order]`.

    Returns:
        `LabelSpace` with names = seen tags (TagList order) + concepts,
        seen = arange(925), unseen = arange(925, 1006).

    Example:

    >>> space = nus_wide_label_space(
    ...     "TagList1k.txt", "Concepts81.txt",
    ...     "NUS_WIDE_pretrained_w2v_glove-wiki-gigaword-300")
    >>> len(space.seen), len(space.unseen)
    (925, 81)
    """
    tags, concepts = _nus_wide_lists(tag_list_path, concepts_path)
    seen_idx = nus_wide_seen_tag_indices(tag_list_path, concepts_path)
    vectors_tags, vectors_concepts = load_word_vectors(
        word_vectors_path, (len(tags), len(concepts)),
        label_files=(tag_list_path, concepts_path),
    )
    names = [tags[i] for i in seen_idx] + list(concepts)
    vectors = np.concatenate([vectors_tags[seen_idx], vectors_concepts])
    num_seen = len(seen_idx)
    return LabelSpace(
        tuple(names),
        vectors,
        np.arange(num_seen),
        np.arange(num_seen, num_seen + len(concepts)),
    )


# ---------------------------------------------------------------------------
# Open Images


@dataclasses.dataclass(frozen=True)
class OpenImagesLabels:
    """Open Images label metadata: MIDs, display names and the 400 unseen.

    Args:
        seen_mids: tuple of str. The trainable MIDs, label-index order.
        all_unseen_mids: tuple of str. Every MID of `unseen_labels.pkl`
            (2,594), the order of LESA's `unseen_label` vectors.
        top_unseen_indices: int64 array. Indices into `all_unseen_mids` of
            the evaluated unseen labels (`top_400_unseen.csv` order).
        mids: tuple of str. Seen MIDs then the selected unseen MIDs: the
            MID of every label of the label space, in its order.
        names: tuple of str. Display name of every label, same order.
            Display names that occur more than once among these labels are
            written `"name (MID)"`; a MID missing from the descriptions
            keeps the MID as its name (listed in `missing_descriptions`).
        missing_descriptions: tuple of str. MIDs without a display name.
    """

    seen_mids: tuple
    all_unseen_mids: tuple
    top_unseen_indices: np.ndarray
    mids: tuple
    names: tuple
    missing_descriptions: tuple = ()

    @property
    def num_seen(self):
        return len(self.seen_mids)

    @property
    def num_unseen(self):
        return len(self.top_unseen_indices)

    @property
    def unseen_mids(self):
        return self.mids[self.num_seen :]


def _load_unseen_mids(path):
    array = np.asarray(load_pickle(path), dtype=object)
    if array.ndim != 1:
        raise ValueError(
            f"{path} must hold a 1-D list/array of MIDs. Received shape "
            f"{array.shape}"
        )
    out = []
    for i, mid in enumerate(array):
        if isinstance(mid, bytes):
            mid = mid.decode("utf-8")
        if not isinstance(mid, str) or not mid:
            raise ValueError(
                f"{path}: entry {i} must be a MID string. Received: {mid!r}"
            )
        out.append(mid)
    return tuple(out)


def _disambiguate(names, mids):
    counts = collections.Counter(names)
    return tuple(
        f"{n} ({m})" if counts[n] > 1 else n
        for n, m in zip(names, mids, strict=True)
    )


def open_images_label_metadata(
    classes_trainable_path,
    unseen_labels_pkl_path,
    top_400_path,
    class_descriptions_path,
):
    """Open Images label MIDs and names, without word vectors.

    Args:
        classes_trainable_path: str. `classes-trainable.txt` (seen MIDs).
        unseen_labels_pkl_path: str. `unseen_labels.pkl` (all unseen MIDs).
        top_400_path: str. `top_400_unseen.csv` (indices into the unseen
            MIDs of the evaluated unseen labels).
        class_descriptions_path: str. `class-descriptions.csv`.

    Returns:
        `OpenImagesLabels`.
    """
    seen_mids = tuple(read_lines(classes_trainable_path))
    all_unseen = _load_unseen_mids(unseen_labels_pkl_path)
    top = read_int_lines(top_400_path)
    if top.size and (top.min() < 0 or top.max() >= len(all_unseen)):
        bad = top[(top < 0) | (top >= len(all_unseen))]
        raise ValueError(
            f"{top_400_path}: indices must lie in [0, {len(all_unseen)}) "
            f"(the number of MIDs in {unseen_labels_pkl_path}). Received: "
            f"{bad[:10].tolist()}"
        )
    if len(np.unique(top)) != len(top):
        raise ValueError(f"{top_400_path}: indices must be unique")
    selected = tuple(all_unseen[i] for i in top)
    mids = seen_mids + selected
    dup = sorted(m for m, n in collections.Counter(mids).items() if n > 1)
    if dup:
        raise ValueError(
            "Seen and unseen Open Images MIDs must be distinct. Received "
            f"MIDs listed twice: {dup[:10]} (from {classes_trainable_path} "
            f"and {unseen_labels_pkl_path})"
        )
    descriptions = read_class_descriptions(class_descriptions_path)
    missing = tuple(m for m in mids if m not in descriptions)
    if missing:
        logger.warning(
            "%d label MIDs have no display name in %s; their MID is used "
            "as the name: %s",
            len(missing),
            class_descriptions_path,
            list(missing[:10]),
        )
    names = _disambiguate([descriptions.get(m, m) for m in mids], mids)
    dup = sorted(n for n, c in collections.Counter(names).items() if c > 1)
    if dup:
        raise ValueError(
            f"Label names are not unique even after adding MIDs: {dup[:10]}"
        )
    return OpenImagesLabels(
        seen_mids=seen_mids,
        all_unseen_mids=all_unseen,
        top_unseen_indices=top,
        mids=mids,
        names=names,
        missing_descriptions=missing,
    )


def open_images_label_space(
    classes_trainable_path,
    unseen_labels_pkl_path,
    top_400_path,
    class_descriptions_path,
    word_vectors_path,
    return_metadata=False,
):
    """The Open Images label space: 7,186 seen then the 400 unseen labels.

    No Open Images word vectors ship with the releases: `word_vectors_path`
    is the user's pickle `[seen array (7186, E), unseen array (2594, E)]`
    (rows in `classes-trainable.txt` / `unseen_labels.pkl` order); the rows
    of the 400 evaluated unseen labels are picked from the second array.

    Args:
        classes_trainable_path: str. `classes-trainable.txt`.
        unseen_labels_pkl_path: str. `unseen_labels.pkl`.
        top_400_path: str. `top_400_unseen.csv`.
        class_descriptions_path: str. `class-descriptions.csv`.
        word_vectors_path: str. The word-vector pickle.
        return_metadata: bool. Also return the `OpenImagesLabels` (MIDs,
            the unseen selection). Defaults to False.

    Returns:
        `LabelSpace` (names are display names, see `OpenImagesLabels`), or
        `(LabelSpace, OpenImagesLabels)` when `return_metadata`.

    Example:

    >>> space, meta = open_images_label_space(
    ...     "classes-trainable.txt", "unseen_labels.pkl",
    ...     "top_400_unseen.csv", "class-descriptions.csv",
    ...     "my_open_images_glove300.pkl", return_metadata=True)
    >>> len(space.seen), len(space.unseen)
    (7186, 400)
    """
    meta = open_images_label_metadata(
        classes_trainable_path,
        unseen_labels_pkl_path,
        top_400_path,
        class_descriptions_path,
    )
    vec_seen, vec_unseen = load_word_vectors(
        word_vectors_path, (meta.num_seen, len(meta.all_unseen_mids)),
        label_files=(classes_trainable_path, unseen_labels_pkl_path),
    )
    vectors = np.concatenate(
        [vec_seen, vec_unseen[meta.top_unseen_indices]], axis=0
    )
    space = LabelSpace(
        meta.names,
        vectors,
        np.arange(meta.num_seen),
        np.arange(meta.num_seen, meta.num_seen + meta.num_unseen),
    )
    return (space, meta) if return_metadata else space
