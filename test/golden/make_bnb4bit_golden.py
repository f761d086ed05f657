#!/usr/bin/env python3
"""Writes the bitsandbytes 4-bit checkpoint that test/tools/qloracc-quantize.test
compares `qloracc-quantize` with, byte for byte.

Run by a developer, never by the build or the tests (CI has no torch), from
the repository root, on a CPU-only machine:

    test/golden/.venv/bin/python test/golden/make_bnb4bit_golden.py

(the venv: torch, transformers 5.x, bitsandbytes 0.50.x). It loads
test/golden/tiny-llama (fp32) as transformers does for QLoRA,

    BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                       bnb_4bit_use_double_quant=True,
                       bnb_4bit_compute_dtype=torch.float32)

on the CPU, and keeps what `model.save_pretrained` writes: model.safetensors
(every *_proj weight as bitsandbytes' QuantState.as_dict(packed=True) keys,
embeddings, norms and lm_head as they were) and config.json (with its
quantization_config), in test/golden/bnb4bit/.

torch runs single-threaded: bitsandbytes' double-quantization offset is
torch's mean of the absmax, whose summation order depends on the thread count
once a weight has more than 32768 blocks (not the case here, but it keeps
the script reproducible for bigger models).
"""

import os
import shutil
import tempfile

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    BitsAndBytesConfig,
)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "tiny-llama")
OUT = os.path.join(HERE, "bnb4bit")


def main():
    torch.set_num_threads(1)
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.float32,
    )
    model = AutoModelForCausalLM.from_pretrained(
        SRC, quantization_config=config, device_map="cpu", dtype=torch.float32
    )
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for name in ("model.safetensors", "config.json"):
            shutil.copyfile(os.path.join(tmp, name), os.path.join(OUT, name))
    for name in sorted(os.listdir(OUT)):
        print(os.path.join(OUT, name), os.path.getsize(os.path.join(OUT, name)))


if __name__ == "__main__":
    main()
