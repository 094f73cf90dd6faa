"""gptlib: minGPT, one part per file, with the checks and tools of the course that builds it.

text -> tokenizer -> batches -> Embeddings -> Block(CausalSelfAttention, MLP) x n -> LMHead -> loss

The model is Karpathy's minGPT in its first (2020) layout, the one the course's
seed model.py has: key, query, value and proj Linears in each attention layer,
the position table pos_emb a bare nn.Parameter, an untied head without bias, an
nn.GELU MLP. Its weights load both ways with from_mingpt / to_mingpt, and
OpenAI's GPT-2 (Hugging Face layout) with from_hf_gpt2 / to_hf_gpt2 /
from_pretrained. The README has the table of parameter names in all three.
"""

# First, before anything imports torch: how torch's threads wait is read once, when torch loads.
from gptlib import threads  # noqa: F401
from gptlib.attention import CausalSelfAttention
from gptlib.block import Block
from gptlib.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from gptlib.config import PRESETS, GPTConfig
from gptlib.corpus import load_corpus
from gptlib.data import CharDataset, get_batch, train_val_split
from gptlib.embeddings import Embeddings
from gptlib.gpt2 import HubUnavailableError, from_hf_gpt2, from_pretrained, gpt2_tokenizer, to_hf_gpt2
from gptlib.head import LMHead
from gptlib.interop import from_mingpt, to_mingpt
from gptlib.kvcache import KVCache
from gptlib.mlp import MLP
from gptlib.model import GPT
from gptlib.tasks import AdditionDataset, SortDataset, format_examples, task_accuracy
from gptlib.tokenizer import CharTokenizer, UnknownCharacterError
from gptlib.train import TrainConfig, Trainer, estimate_loss, lr_at

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
    "CharTokenizer",
    "UnknownCharacterError",
    "load_corpus",
    "get_batch",
    "train_val_split",
    "CharDataset",
    "SortDataset",
    "AdditionDataset",
    "task_accuracy",
    "format_examples",
    "TrainConfig",
    "Trainer",
    "lr_at",
    "estimate_loss",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "CheckpointError",
    "from_mingpt",
    "to_mingpt",
    "from_hf_gpt2",
    "to_hf_gpt2",
    "from_pretrained",
    "gpt2_tokenizer",
    "HubUnavailableError",
]
