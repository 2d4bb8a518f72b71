"""The data layer: CS224N files in, counted defects out, token ids cached, batches padded.

Importing this package does not import torch; :func:`collate` imports it when called.
"""

from mtsearch.data.check import check_report
from mtsearch.data.fetch import DEFAULT_SOURCE, KNOWN_MD5, QQP_TRAIN_BLOB_SHA1, fetch_data
from mtsearch.data.loaders import (
    SPLITS,
    Defect,
    Example,
    Split,
    candidate_files,
    fingerprint,
    load_extra,
    load_split,
    parse_file,
    require_extra_files,
    require_files,
    resolve_data_dir,
    split_path,
)
from mtsearch.data.tokens import (
    PAIR_MODES,
    EncodedSplit,
    Segment,
    collate,
    concat_encoded,
    concat_segments,
    encode_split,
    tokenizer_identity,
)

__all__ = [
    "DEFAULT_SOURCE",
    "KNOWN_MD5",
    "PAIR_MODES",
    "QQP_TRAIN_BLOB_SHA1",
    "SPLITS",
    "Defect",
    "EncodedSplit",
    "Example",
    "Segment",
    "Split",
    "candidate_files",
    "check_report",
    "collate",
    "concat_encoded",
    "concat_segments",
    "encode_split",
    "fetch_data",
    "fingerprint",
    "load_extra",
    "load_split",
    "parse_file",
    "require_extra_files",
    "require_files",
    "resolve_data_dir",
    "split_path",
    "tokenizer_identity",
]
