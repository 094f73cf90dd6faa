"""gptlib: minGPT, one part per file, with the checks and tools of the course that builds it.

text -> tokenizer -> batches -> Embeddings -> Block(CausalSelfAttention, MLP) x n -> LMHead -> loss
"""

from gptlib.attention import CausalSelfAttention
from gptlib.block import Block
from gptlib.config import PRESETS, GPTConfig
from gptlib.embeddings import Embeddings
from gptlib.head import LMHead
from gptlib.kvcache import KVCache
from gptlib.mlp import MLP
from gptlib.model import GPT

__version__ = "0.1.0"

__all__ = [
    "GPTConfig",
    "PRESETS",
    "Embeddings",
    "CausalSelfAttention",
    "MLP",
    "Block",
    "LMHead",
    "GPT",
    "KVCache",
]
