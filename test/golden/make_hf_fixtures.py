#!/usr/bin/env python3
"""Writes the tiny Hugging Face checkpoints that qloracc-import's tests read.

Run by a developer, never by the build or the tests:

    python3 -m venv test/golden/.venv
    test/golden/.venv/bin/pip install torch transformers safetensors
    test/golden/.venv/bin/python test/golden/make_hf_fixtures.py

Outputs (committed, well under 1 MB together):
  tiny-llama/            LlamaForCausalLM, fp32, one model.safetensors, GQA
                         (4 query heads, 2 KV heads), untied lm_head.
  tiny-mistral-sharded/  MistralForCausalLM, bf16, sharded with
                         model.safetensors.index.json, tied embeddings.
Both are saved with `save_pretrained`, so file names, keys and config.json
are exactly what transformers writes.
"""
import os
import sys

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPE = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)


def save(model, name, **kwargs):
    out = os.path.join(HERE, name)
    model.save_pretrained(out, **kwargs)
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{name}: {total} bytes in {sorted(os.listdir(out))}")


def main():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}",
          file=sys.stderr)
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(
        **SHAPE, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, torch_dtype="float32"))
    save(llama.to(torch.float32), "tiny-llama")

    torch.manual_seed(1)
    mistral = MistralForCausalLM(MistralConfig(
        **SHAPE, rms_norm_eps=1e-6, rope_theta=1000000.0, sliding_window=None,
        tie_word_embeddings=True, torch_dtype="bfloat16"))
    save(mistral.to(torch.bfloat16), "tiny-mistral-sharded",
         max_shard_size="100KB")


if __name__ == "__main__":
    main()
