#!/usr/bin/env python3
"""Checks that a LoRA adapter directory loads in PEFT and means what we think.

Run by a developer, never by the build or the tests (CI has no torch), from
the repository root, on an adapter qlora-run exported (--save-adapter) or one
that make_training_golden.py wrote:

    test/golden/.venv/bin/python test/golden/check_adapter_in_peft.py ADAPTER_DIR \\
        [--data test/golden/parity/tokens.jsonl] [--expect-loss X] [--nf4-base]
        [--base test/golden/tiny-llama]

(the venv as in make_training_golden.py; --nf4-base needs bitsandbytes too).

1. PeftModel.from_pretrained(base, ADAPTER_DIR) must load without warnings
   about missing or unexpected keys; besides, the file's keys must be exactly
   the model's LoRA parameters (without the adapter name) and every loaded
   tensor must equal the file's bit for bit.
2. Logits of the PEFT model on the batch (eval mode, fp32, eager attention)
   must agree (max |diff| < 1e-4) with those of a fresh base model merged by
   hand, W <- W + s * B @ A, s = lora_alpha / r (/ sqrt(r) with use_rslora),
   from adapter_model.safetensors and adapter_config.json alone.
3. Prints the loss (labels = input_ids, HF's shifted mean). With
   --expect-loss X (the loss qlora-run reports for the same batch and
   adapter) the relative difference must be < 1e-5.
--nf4-base replaces the frozen projection weights by their bitsandbytes NF4
round trip first (as make_training_golden.py --base nf4 does), for adapters
trained by the pipeline that quantizes them.

Exits 1 with "FAIL ..." on any failed check, else prints "OK ...".
"""
import argparse
import json
import math
import os
import sys
import warnings

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_training_golden import nf4_roundtrip_linears  # noqa: E402

PREFIX = "base_model.model."
LOGITS_ATOL = 1e-4
LOSS_RTOL = 1e-5


def fail(message):
    print(f"FAIL {message}")
    sys.exit(1)


def load_base(path, nf4):
    model = LlamaForCausalLM.from_pretrained(path, attn_implementation="eager",
                                             dtype=torch.float32)
    if nf4:
        nf4_roundtrip_linears(model)
    return model.eval()


def read_batch(path):
    with open(path) as f:
        rows = [json.loads(line)["input_ids"] for line in f if line.strip()]
    if not rows or len({len(r) for r in rows}) != 1:
        fail(f"{path}: expected lines of equal-length \"input_ids\"")
    return torch.tensor(rows, dtype=torch.long)


def forward(model, ids):
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    return out.logits.float(), out.loss.item()


def load_with_peft(base_path, adapter_dir, nf4, tensors):
    base = load_base(base_path, nf4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, adapter_dir)
    for w in caught:
        text = str(w.message)
        if "missing" in text.lower() or "unexpected" in text.lower():
            fail(f"PEFT warned while loading {adapter_dir}: {text}")
    model.eval()
    loaded = {n.replace(".default.", "."): p for n, p in model.named_parameters()
              if ".lora_" in n}
    missing = sorted(set(loaded) - set(tensors))
    extra = sorted(set(tensors) - set(loaded))
    if missing or extra:
        fail(f"adapter keys differ from the model's LoRA parameters: not in the file "
             f"{missing}, not in the model {extra}")
    for key, param in loaded.items():
        if not torch.equal(param.detach(), tensors[key].to(param.dtype)):
            fail(f"{key}: PEFT's loaded tensor differs from the file's")
    return model


def merge_by_hand(base_path, nf4, tensors, config):
    for key, bad in (("use_dora", True), ("fan_in_fan_out", True)):
        if config.get(key) == bad:
            fail(f"adapter_config.json: {key}={bad} is not supported here")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        fail("adapter_config.json: rank_pattern/alpha_pattern are not supported here")
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    model = load_base(base_path, nf4)
    modules = dict(model.named_modules())
    merged = 0
    with torch.no_grad():
        for key in sorted(tensors):
            if not key.endswith(".lora_A.weight"):
                continue
            if not key.startswith(PREFIX):
                fail(f"{key}: expected the prefix '{PREFIX}'")
            module_name = key[len(PREFIX):-len(".lora_A.weight")]
            a = tensors[key].double()
            b = tensors[key.replace(".lora_A.", ".lora_B.")].double()
            if a.shape[0] != r or b.shape[1] != r:
                fail(f"{key}: A {list(a.shape)}, B {list(b.shape)} do not have rank {r}")
            weight = modules[module_name].weight
            weight.copy_((weight.double() + scale * (b @ a)).to(weight.dtype))
            merged += 1
    return model, merged, scale


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("adapter_dir")
    parser.add_argument("--data", default=os.path.join(HERE, "parity", "tokens.jsonl"))
    parser.add_argument("--base", default=os.path.join(HERE, "tiny-llama"))
    parser.add_argument("--expect-loss", type=float)
    parser.add_argument("--nf4-base", action="store_true")
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)

    with open(os.path.join(args.adapter_dir, "adapter_config.json")) as f:
        config = json.load(f)
    tensors = load_file(os.path.join(args.adapter_dir, "adapter_model.safetensors"))
    ids = read_batch(args.data)

    peft_model = load_with_peft(args.base, args.adapter_dir, args.nf4_base, tensors)
    peft_logits, loss = forward(peft_model, ids)
    merged_model, merged, scale = merge_by_hand(args.base, args.nf4_base, tensors, config)
    merged_logits, merged_loss = forward(merged_model, ids)
    diff = (peft_logits - merged_logits).abs().max().item()
    print(f"{len(tensors)} tensors, {merged} modules merged with s={scale!r}; "
          f"max |logits(PEFT) - logits(merged)| = {diff:.3e}")
    if not diff < LOGITS_ATOL:
        fail(f"PEFT and hand-merged logits differ by {diff:.3e} (limit {LOGITS_ATOL:g})")
    print(f"loss {loss!r} (hand-merged {merged_loss!r})")
    if args.expect_loss is not None:
        rel = abs(loss - args.expect_loss) / abs(loss)
        if not rel < LOSS_RTOL:
            fail(f"loss {loss!r}, expected {args.expect_loss!r}: rel diff {rel:.3e} "
                 f"(limit {LOSS_RTOL:g})")
        print(f"expected loss {args.expect_loss!r}: rel diff {rel:.3e}")
    print(f"OK {args.adapter_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
