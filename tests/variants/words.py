"""Phrases that name a mistake which several exercises share (one alternative must appear in the message)."""

NO_SCALE = (
    "without the scale",
    "without scaling",
    "no scale",
    "missing scale",
    "missing the scale",
    "scale is missing",
    "scale missing",
    "not scaled",
    "unscaled",
    "forgot the scale",
    "without the 1/sqrt",
    "no 1/sqrt",
    "not divided by sqrt",
)
SCALE_BY_N_EMBD = ("n_embd",)
SCALE_MULTIPLIED = ("multipl", "instead of divid", "times sqrt", "inverse")
SCALE_NO_SQRT = ("square root", "without the sqrt", "no sqrt", "sqrt missing", "1/head_size", "/ head_size")
SCALE_AFTER_SOFTMAX = (("scale", "after the softmax"), ("scale", "before the softmax"))
FILL_ZERO = ("with 0", "0 instead", "zero instead", "with zero", "not -inf", "instead of -inf", "exp(0)")
MASK_INVERTED = (
    "invert",
    "flip",
    "wrong side",
    "the past instead",
    "masks the past",
    "masked the past",
    "keeps the future",
    "reversed",
    "tril == 1",
    "upside",
)
NO_MASK = ("mask", "future", "causal")
MASK_AFTER_SOFTMAX = ("after the softmax",)
SOFTMAX_AXIS = ("axis", "dim=-2", "dim -2", "dim=1", "over the queries", "wrong dim", "column")
ROW_FULLY_MASKED = ("nan", "whole row", "itself", "diagonal")
MASK_NOT_SLICED = ("slice", ":t", "shorter", "t < block_size", "t = 1", "t=1")
KEYS_QUERIES_SWAPPED = ("swap", "k @ q", "keys and queries", "queries and keys", "transposed")
IN_PLACE = ("in place", "in-place", "changed", "modif", "untouched")
TUPLE = ("tuple", "comma")
NONE = ("None", "return")
EVAL_DROPOUT = ("eval",)
HEADS_INTERLEAVED = (
    "interleav",
    "split the heads",
    "heads split",
    "split into heads",
    "hs, nh",
    "channels of each head",
    "head's channels",
)
HEADS_MERGED = ("transpose", "merg", "reassembl", "re-assembl", "side by side")
NO_PROJ = ("proj",)
