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
NO_GRAD = "no-grad"  # a gradient does not reach a parameter or the input
WRONG_PARAMS = "wrong-params"
FUTURE_LEAK = "future-leak"
DROPOUT_IN_EVAL = "dropout-in-eval"
NO_DROPOUT = "no-dropout"
DROPOUT_RATE = "dropout-rate"
DROPOUT_NOT_SCALED = "dropout-not-scaled"
# what a tensor result can be instead of the tensor asked for (probes.expect_tensor)
TENSOR = (RETURNED_NONE, RETURNED_TUPLE, NOT_A_TENSOR, WRONG_SHAPE, WRONG_DTYPE, NAN)

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
SEPARATE_STARTS = "separate-starts"
SAME_WINDOW = "same-window"
IGNORES_GENERATOR = "ignores-generator"
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
RETURNED_WEIGHTS = "returned-weights"  # a head that returns its attention weights
MERGE_ORDER = "merge-order"
HEAD_SPLIT = "head-split"
ONE_HEAD = "one-head"  # one head of full width
NO_PROJ = "no-proj"
DROPOUT_ON_SCORES = "dropout-on-scores"

# ---- 03 mlp ---------------------------------------------------------------------------------------
TANH_APPROXIMATION = "tanh-approximation"
SIGMOID_APPROXIMATION = "sigmoid-approximation"
RELU = "relu"
MISSING_HALF = "missing-half"
ERF_ARGUMENT = "erf-argument"
MISSING_X = "missing-x"
MATH_ERF = "math-erf"
HIDDEN_WIDTH = "hidden-width"
MISSING_SECOND_LINEAR = "missing-second-linear"
EXTRA_LINEAR = "extra-linear"
LAYERS_NOT_FOUND = "layers-not-found"
TANH_GELU = "tanh-gelu"
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
