"""Every diagnosis a check can give, as a named constant: the one spelling of each mistake.

A teacher's summary counts mistakes by these codes, so one mistake has one code in
every lesson (an input changed in place is IN_PLACE wherever it happens). Each
code has a hint for each exercise that can give it (gptlib/checks/hints/*.md; a
test holds the two together).
"""

# ---- any exercise -------------------------------------------------------------------------------
NOT_DONE = "not-done"  # the stub still raises NotImplementedError
CRASHED = "crashed"  # the learner's code raised
NO_SUPER_INIT = "no-super-init"
NO_FORWARD = "no-forward"  # an nn.Module without a forward method
RETURNED_NONE = "returned-none"
RETURNED_TUPLE = "returned-tuple"
NOT_CALLABLE = "not-callable"  # a function exercise given something else
NOT_A_CLASS = "not-a-class"
INSTANCE_NOT_CLASS = "instance-not-class"
NOT_A_MODULE = "not-a-module"
NOT_A_TENSOR = "not-a-tensor"
WRONG_SHAPE = "wrong-shape"
WRONG_DTYPE = "wrong-dtype"
WRONG_VALUES = "wrong-values"  # no known mistake matched
NAN = "nan"
IN_PLACE = "in-place"  # an input changed in place
FIXED_T = "fixed-T"  # right for one length only
HARD_CODED = "hard-coded"  # right for the check's config only: a size fixed in the code
WRONG_GRAD = "wrong-grad"  # a gradient arrives, with the wrong values
NO_GRAD = "no-grad"  # a gradient does not reach a parameter or the input
WRONG_PARAMS = "wrong-params"
FUTURE_LEAK = "future-leak"
DROPOUT_IN_EVAL = "dropout-in-eval"
NO_DROPOUT = "no-dropout"
DROPOUT_RATE = "dropout-rate"
DROPOUT_NOT_SCALED = "dropout-not-scaled"
# what a tensor result can be instead of the tensor asked for (probes.expect_tensor)
TENSOR = (RETURNED_NONE, RETURNED_TUPLE, NOT_A_TENSOR, WRONG_SHAPE, WRONG_DTYPE, NAN)
# what a class exercise can be given instead of an nn.Module class (Exercise.build)
CLASS = (NOT_A_CLASS, INSTANCE_NOT_CLASS, NOT_A_MODULE)

# ---- 00 tokens and batches ------------------------------------------------------------------------
NO_VOCAB_SIZE = "no-vocab-size"
VOCAB_SIZE_WRONG = "vocab-size-wrong"
NOT_SORTED = "not-sorted"
IDS_FROM_ONE = "ids-from-one"
ENCODE_NOT_IDS = "encode-not-ids"
DECODE_NOT_STR = "decode-not-str"
DECODE_WRONG = "decode-wrong"
UNKNOWN_SILENT = "unknown-silent"
UNKNOWN_KEYERROR = "unknown-keyerror"
UNKNOWN_WRONG_ERROR = "unknown-wrong-error"
UNKNOWN_UNNAMED = "unknown-unnamed"
NOT_A_PAIR = "not-a-pair"
TRANSPOSED = "transposed"
NOT_A_SLICE = "not-a-slice"
Y_NOT_SHIFTED = "y-not-shifted"
SHIFTED_WRONG_WAY = "shifted-wrong-way"
SHIFTED_TOO_FAR = "shifted-too-far"  # y starts k > 1 tokens after x
NOT_RANDOM = "not-random"  # fixed windows, whatever the generator
SEPARATE_STARTS = "separate-starts"
SAME_WINDOW = "same-window"
RESEEDS_GENERATOR = "reseeds-generator"
PAST_END = "past-end"
NEVER_LAST_WINDOW = "never-last-window"
NEVER_FIRST_WINDOW = "never-first-window"
LOG2 = "log2"
LOG10 = "log10"
SIGN = "sign"
COUNTS_NOT_PROBS = "counts-not-probs"
UNIFORM = "uniform"
NOT_A_NUMBER = "not-a-number"
MEAN_NOT_SUM = "mean-not-sum"
INTEGER_DIVISION = "integer-division"

# ---- 01 embeddings --------------------------------------------------------------------------------
NOT_FLOAT = "not-float"
NUM_CLASSES = "num-classes"
RETURNED_ONE_HOT = "returned-one-hot"
NO_TOKEN_TABLE = "no-token-table"
POSITIONS_MISSING = "positions-missing"
POSITIONS_NOT_LEARNED = "positions-not-learned"
POSITIONS_NOT_ADDED = "positions-not-added"
TOKENS_NOT_ADDED = "tokens-not-added"
SCALED = "scaled"
POSITIONS_MULTIPLIED = "positions-multiplied"
ELEMENTWISE = "elementwise"  # `*` where a matrix product is meant
CONCATENATED = "concatenated"
POSITIONS_NOT_SLICED = "positions-not-sliced"
POSITIONS_BY_TOKEN_ID = "positions-by-token-id"
POSITIONS_FROM_ONE = "positions-from-one"
BATCH_DIMENSION = "batch-dimension"
DROPOUT_ON_TOKENS_ONLY = "dropout-on-tokens-only"
DROPOUT_ON_POSITIONS_ONLY = "dropout-on-positions-only"
NOT_NORMALISED = (
    "not-normalised"  # rows that should be unit vectors (01), or weights that should sum to 1 (02, 07)
)
WRONG_DIM = "wrong-dim"
WRONG_ORIENTATION = "wrong-orientation"
ONE_SIDE_NORMALISED = "one-side-normalised"
NORM_SQUARED = "norm-squared"
DISTANCE = "distance"

# ---- 02 attention (07 uses most of these too) -----------------------------------------------------
NOT_CAUSAL = "not-causal"
WRONG_DIVISOR = "wrong-divisor"
SUM_NOT_MEAN = "sum-not-mean"
EXCLUDES_SELF = "excludes-self"
WRONG_AXIS = "wrong-axis"
NAN_0_INF = "nan-0-inf"  # a mask made with arithmetic: 0 * -inf
ROW_MASKED = "row-masked"  # the diagonal masked too: a row with no key
SOFTMAX_AXIS = "softmax-axis"
NO_MASK = "no-mask"
MASK_TRANSPOSED = "mask-transposed"  # triu: the present and the future
MASK_INVERTED = "mask-inverted"  # masked_fill(tril == 1): the future only
MASK_FILL_ZERO = "mask-fill-zero"  # the future filled with 0 instead of -inf
MASK_AFTER_SOFTMAX = "mask-after-softmax"
EXTRA_SCALE = "extra-scale"
MISSING_SCALE = "missing-scale"
WRONG_SCALE = "wrong-scale"
QK_SWAPPED = "qk-swapped"
MASK_PARAMETER = "mask-parameter"
MASK_NOT_BUFFER = "mask-not-buffer"  # a plain tensor attribute: it does not follow .to(device)
RETURNED_WEIGHTS = "returned-weights"  # a head that returns its attention weights
COLUMNS_NORMALISED = "columns-normalised"  # wei / wei.sum(0): columns sum to 1
T_FROM_FIRST_AXIS = "T-from-first-axis"  # T = scores.size(0), the batch
SCALE_AFTER_SOFTMAX = "scale-after-softmax"
WEIGHTS_TIMES_X = "weights-times-x"  # wei @ x instead of wei @ v
HEAD_SIZE_IGNORED = "head-size-ignored"  # a Head's layers n_embd wide
TRANSPOSE_ALL_DIMS = "transpose-all-dims"  # k.T on (B, T, hs)
MERGE_ORDER = "merge-order"
HEAD_SPLIT = "head-split"
ONE_HEAD = "one-head"  # one head of full width
NO_PROJ = "no-proj"
DROPOUT_ON_SCORES = "dropout-on-scores"

# ---- 03 mlp ---------------------------------------------------------------------------------------
TANH_APPROXIMATION = "tanh-approximation"
SIGMOID_APPROXIMATION = "sigmoid-approximation"
RELU = "relu"
SILU = "silu"
MISSING_HALF = "missing-half"
ERF_ARGUMENT = "erf-argument"
MISSING_X = "missing-x"
MATH_ERF = "math-erf"
HIDDEN_WIDTH = "hidden-width"
MISSING_SECOND_LINEAR = "missing-second-linear"
EXTRA_LINEAR = "extra-linear"
LAYERS_NOT_FOUND = "layers-not-found"
NO_ACTIVATION = "no-activation"
ACTIVATION_AFTER_PROJ = "activation-after-proj"
RESIDUAL_INSIDE = "residual-inside"
DROPOUT_WRONG_PLACE = "dropout-wrong-place"
MIXES_POSITIONS = "mixes-positions"

# ---- 04 residual stack ----------------------------------------------------------------------------
EPS_OUTSIDE = "eps-outside"
UNBIASED_VAR = "unbiased-var"
NO_EPS = "no-eps"
EPS_VALUE = "eps-value"
EPS_IGNORED = "eps-ignored"
NO_SQRT = "no-sqrt"
NO_CENTERING = "no-centering"
NO_KEEPDIM = "no-keepdim"  # the mean and variance lose their last dim
FIXED_RANK = "fixed-rank"
GAIN_UNUSED = "gain-unused"
BIAS_UNUSED = "bias-unused"
GAIN_BIAS_UNUSED = "gain-bias-unused"
BIAS_BEFORE_GAIN = "bias-before-gain"
GAIN_BIAS_SWAPPED = "gain-bias-swapped"
MISSING_GAIN_BIAS = "missing-gain-bias"
INIT = "init"
NO_RESIDUAL_ATTN = "no-residual-attn"
NO_RESIDUAL_MLP = "no-residual-mlp"
NO_RESIDUAL = "no-residual"
POST_NORM = "post-norm"
NORM_IN_RESIDUAL = "norm-in-residual"
NO_LAYERNORM = "no-layernorm"
SAME_LAYERNORM = "same-layernorm"
MLP_FIRST = "mlp-first"
PARALLEL = "parallel"
MLP_READS_ATTN = "mlp-reads-attn"  # mlp(ln2(attn_out)) instead of mlp(ln2(x))
SUBLAYER_UNUSED = "sublayer-unused"
ATTENTION_DIFFERS = "attention-differs"
MLP_DIFFERS = "mlp-differs"
LAYERNORM_DIFFERS = "layernorm-differs"

# ---- 05 gpt ---------------------------------------------------------------------------------------
NO_LOG = "no-log"
NO_MEAN = "no-mean"
WRONG_INDEX = "wrong-index"
NO_SOFTMAX = "no-softmax"
OVERFLOW = "overflow"
RETURNS_TENSOR = "returns-tensor"
RETURN_ORDER = "return-order"  # (loss, logits) instead of (logits, loss)
WRONG_RETURN = "wrong-return"
NO_HEAD = "no-head"
FLATTENED_LOGITS = "flattened-logits"
LOSS_WITHOUT_TARGETS = "loss-without-targets"
LOSS_NOT_MEAN = "loss-not-mean"
LOSS_WRONG = "loss-wrong"
LOSS_NOT_FLATTENED = "loss-not-flattened"  # cross_entropy on (B, T, V) logits
LOSS_ON_PROBABILITIES = "loss-on-probabilities"
TARGETS_SHIFTED = "targets-shifted"  # the targets shifted a second time
HEAD_BIAS = "head-bias"
NO_FINAL_LN = "no-final-ln"
LN_F_FIRST = "ln-f-first"  # the final LayerNorm before the blocks
NO_POSITION = "no-position"
TIED_WEIGHTS = "tied-weights"
N_LAYER = "n-layer"
BLOCKS_NOT_REGISTERED = "blocks-not-registered"  # the blocks in a plain Python list
INITIAL_LOSS = "initial-loss"
BLOCKS_UNUSED = "blocks-unused"
BLOCKS_NOT_CHAINED = "blocks-not-chained"
PROBABILITIES = "probabilities"
LOG_PROBABILITIES = "log-probabilities"
HEAD_MISSING = "head-missing"
LAYERNORM_COUNT = "layernorm-count"
BIASES = "biases"
ATTENTION_COUNT = "attention-count"
MLP_COUNT = "mlp-count"
LAYER_COUNT = "layer-count"

# ---- 06 training and sampling ---------------------------------------------------------------------
UNKNOWN_NAME = "unknown-name"
POS_EMB_NAME = "pos-emb-name"
IN_BOTH = "in-both"
POS_EMB_MISSING = "pos-emb-missing"
MISSING = "missing"
SWAPPED = "swapped"
BY_DIM = "by-dim"
LAYERNORM_DECAYED = "layernorm-decayed"
EMBEDDING_DECAYED = "embedding-decayed"
POS_EMB_DECAYED = "pos-emb-decayed"
BIAS_DECAYED = "bias-decayed"
LINEAR_NOT_DECAYED = "linear-not-decayed"
LOSS_NOT_RETURNED = "loss-not-returned"
WRONG_LOSS = "wrong-loss"
NO_ZERO_GRAD = "no-zero-grad"
ZERO_GRAD_AFTER_BACKWARD = "zero-grad-after-backward"
STEP_BEFORE_BACKWARD = "step-before-backward"
NO_CLIP = "no-clip"
CLIP_AFTER_STEP = "clip-after-step"
CLIP_BY_VALUE = "clip-by-value"
CLIP_VALUE = "clip-value"
EVAL_MODE = "eval-mode"
LR_NOT_SET = "lr-not-set"
LR_ONE_GROUP = "lr-one-group"
WRONG_UPDATE = "wrong-update"
GENERATOR_IGNORED = "generator-ignored"
SAMPLED_LOGITS = "sampled-logits"
ARGMAX = "argmax"
TEMPERATURE_MULTIPLIED = "temperature-multiplied"
TEMPERATURE_IGNORED = "temperature-ignored"
TOPK_IGNORED = "topk-ignored"
TOPK_ZERO = "topk-zero"
SOFTMAX_TWICE = "softmax-twice"
TOPK_INDEX = "topk-index"
OUT_OF_RANGE = "out-of-range"
WRONG_DISTRIBUTION = "wrong-distribution"

# ---- 07 attention maps ----------------------------------------------------------------------------
WRONG_PROJECTION = "wrong-projection"
NO_BIAS = "no-bias"
EXTRA_DIM = "extra-dim"
NOT_AVERAGED = "not-averaged"
ONE_NUMBER = "one-number"
DIAGONAL = "diagonal"
OFF_BY_ONE = "off-by-one"
INCLUDES_POSITION_0 = "includes-position-0"
SAME_TOKEN = "same-token"
INCLUDES_FIRST_REPEAT = "includes-first-repeat"
PREVIOUS_TOKEN = "previous-token"
FIXED_SEQ_LEN = "fixed-seq-len"

WEIGHT_NOT_TRANSPOSED = "weight-not-transposed"  # x @ weight with an (out, in) weight
DIAGONAL_DIMS = "diagonal-dims"  # torch.diagonal over layers and heads

# ---- 08 generation and speed ----------------------------------------------------------------------
CROSSING_DROPPED = "crossing-dropped"
KEEPS_NONE = "keeps-none"
KEEPS_EXTRA = "keeps-extra"
ASCENDING = "ascending"
MASS_ON_LOGITS = "mass-on-logits"
SORTED_ORDER = "sorted-order"
UNSORT_GATHER = "unsort-gather"
ZEROS_NOT_INF = "zeros-not-inf"
NOTHING_DROPPED = "nothing-dropped"
VALUES_CHANGED = "values-changed"
CACHE_ORDER = "cache-order"  # new keys before the cached ones
VALUES_FROM_KEY = "values-from-key"
P_ONE = "p-one"
TIES = "ties"
WRONG_SET = "wrong-set"
GREEDY_NOT_ARGMAX = "greedy-not-argmax"
GREEDY_DIVIDES_BY_ZERO = "greedy-divides-by-zero"
TOPK_OFF_BY_ONE = "topk-off-by-one"
TOPP_IGNORED = "topp-ignored"
TOPP_WRONG = "topp-wrong"
TOPP_BEFORE_TEMPERATURE = "topp-before-temperature"
FILTERS_SWAPPED = "filters-swapped"
ROWS_MIXED = "rows-mixed"
CACHE_NOT_STORED = "cache-not-stored"
CACHE_LAYOUT = "cache-layout"
CACHE_LENGTH = "cache-length"
CACHE_NOT_USED = "cache-not-used"
CACHE_OVERWRITTEN = "cache-overwritten"
MASK_NOT_OFFSET = "mask-not-offset"
PROMPT_CHANGED = "prompt-changed"
USES_FINISHED_GENERATE = "uses-finished-generate"
NOT_CROPPED = "not-cropped"
WINDOW_FULL = "window-full"
FRESH_CACHE = "fresh-cache"
PREFILL_NOT_CACHED = "prefill-not-cached"
WINDOW_SHORT = "window-short"
FIRST_POSITION = "first-position"
SAMPLING_IGNORED = "sampling-ignored"
TOKEN_TWICE = "token-twice"  # a token fed to the KV cache twice
NO_SPEEDUP = "no-speedup"
RECOMPUTE_EARLY = "recompute-early"
EXTRA_WORK = "extra-work"
WRONG_TOKENS = "wrong-tokens"

# ---- 09 gpt2 --------------------------------------------------------------------------------------
NO_TRANSFORMERS = "no-transformers"
NO_TRANSPOSE = "no-transpose"
ORDER = "order"
INTERLEAVED = "interleaved"
NOT_SPLIT = "not-split"
BIAS_NOT_SPLIT = "bias-not-split"
BIAS_MISSING = "bias-missing"
FIXED_SIZE = "fixed-size"
EXACT_GELU = "exact-gelu"
EPS = "eps"
N_HEAD = "n-head"
QKV_NOT_TRANSPOSED = "qkv-not-transposed"
QKV_ORDER = "qkv-order"
PROJ_NOT_TRANSPOSED = "proj-not-transposed"
RESHAPE_NOT_TRANSPOSE = "reshape-not-transpose"
LN_SWAPPED = "ln-swapped"
LN_NOT_COPIED = "ln-not-copied"
BIASES_MISSING = "biases-missing"
SHAPE_MISMATCH = "shape-mismatch"
NOT_CONVERTED = "not-converted"
TRAIN_MODE = "train-mode"
HEAD = "head"
HEAD_TRANSPOSED = "head-transposed"
WTE = "wte"
WPE = "wpe"
POS_SHAPE = "pos-shape"
LN_F = "ln-f"
BLOCK = "block"
CONFIG = "config"
