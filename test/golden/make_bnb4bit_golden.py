#!/usr/bin/env python3
"""Writes the bitsandbytes 4-bit checkpoints that test/tools/qloracc-quantize*.test
compare `qloracc-quantize` with, byte for byte.

Run by a developer, never by the build or the tests (CI has no torch), from
the repository root, on a CPU-only machine:

    test/golden/.venv/bin/python test/golden/make_bnb4bit_golden.py

(the venv: torch, transformers 5.x, bitsandbytes 0.50.x). It loads each
fixture as transformers does for QLoRA,

    BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                       bnb_4bit_use_double_quant=True,
                       bnb_4bit_compute_dtype=<the model's dtype>)

on the CPU, and keeps every file `model.save_pretrained` writes (every
*_proj weight as bitsandbytes' QuantState.as_dict(packed=True) keys,
embeddings, norms and lm_head as they were; config.json with its
quantization_config; generation_config.json):

  bnb4bit/                     test/golden/tiny-llama (fp32, one file)
  bnb4bit-mistral-sharded/     test/golden/tiny-mistral-sharded (bf16, two
                               shards, tied embeddings), every tensor kept in
                               the shard it came from, as qloracc-quantize
                               does (see keeping_source_shards)

torch runs single-threaded: bitsandbytes' double-quantization offset is
torch's mean of the absmax, whose summation order depends on the thread count
once a weight has more than 32768 blocks (not the case here, but it keeps
the script reproducible for bigger models).
"""

import json
import os
import shutil
import tempfile

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

import torch  # noqa: E402
from huggingface_hub import StateDictSplit  # noqa: E402
from huggingface_hub import (  # noqa: E402
    split_torch_state_dict_into_shards as _split_by_size,
)
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    BitsAndBytesConfig,
    modeling_utils,
)

HERE = os.path.dirname(os.path.abspath(__file__))
INDEX = "model.safetensors.index.json"


def load_4bit(src, dtype):
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )
    return AutoModelForCausalLM.from_pretrained(
        src, quantization_config=config, device_map="cpu", dtype=dtype
    )


def base_weight(key):
    """The checkpoint tensor a 4-bit state-dict key comes from."""
    for suffix in (".absmax", ".quant_map", ".nested_absmax",
                   ".nested_quant_map", ".quant_state.bitsandbytes__nf4"):
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def keeping_source_shards(src):
    """A stand-in for huggingface_hub's split_torch_state_dict_into_shards
    that save_pretrained calls: every tensor (and the quant-state tensors of
    a quantized one) goes to the shard of `src` it was read from, as
    qloracc-quantize does, instead of filling shards greedily in key order
    (which cannot reproduce the source's split: save_pretrained sorts the
    keys). Everything else, total_size included, is huggingface_hub's."""
    with open(os.path.join(src, INDEX)) as f:
        weight_map = json.load(f)["weight_map"]

    def split(state_dict, *, filename_pattern, max_shard_size):
        whole = _split_by_size(state_dict, filename_pattern=filename_pattern,
                               max_shard_size="1000GB")
        to_tensors = {}
        for key in state_dict:
            to_tensors.setdefault(weight_map[base_weight(key)], []).append(key)
        return StateDictSplit(
            metadata=whole.metadata,
            filename_to_tensors=dict(sorted(to_tensors.items())),
            tensor_to_filename={k: f for f, ks in to_tensors.items() for k in ks},
        )

    return split


def save(model, out, **kwargs):
    if os.path.isdir(out):
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, **kwargs)
        shutil.copytree(tmp, out)
    for name in sorted(os.listdir(out)):
        print(os.path.join(out, name), os.path.getsize(os.path.join(out, name)))


def main():
    torch.set_num_threads(1)

    llama = load_4bit(os.path.join(HERE, "tiny-llama"), torch.float32)
    save(llama, os.path.join(HERE, "bnb4bit"))

    src = os.path.join(HERE, "tiny-mistral-sharded")
    mistral = load_4bit(src, torch.bfloat16)
    out = os.path.join(HERE, "bnb4bit-mistral-sharded")
    modeling_utils.split_torch_state_dict_into_shards = keeping_source_shards(src)
    try:
        save(mistral, out)
    finally:
        modeling_utils.split_torch_state_dict_into_shards = _split_by_size


if __name__ == "__main__":
    main()
