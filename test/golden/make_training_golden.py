#!/usr/bin/env python3
"""Writes the LoRA training parity data that test/e2e/parity.test checks against.

Run by a developer, never by the build or the tests (CI has no torch), from
the repository root:

    python3 -m venv test/golden/.venv
    test/golden/.venv/bin/pip install torch transformers peft safetensors bitsandbytes
    test/golden/.venv/bin/python test/golden/make_training_golden.py
    test/golden/.venv/bin/python test/golden/make_training_golden.py --base nf4

(in this order: the nf4 run reuses, and checks, the first run's init adapter
and tokens). Both runs are deterministic: running them again gives the same
bytes (the script re-executes itself with PYTHONHASHSEED=0 for that).

Reference: transformers LlamaForCausalLM (eager attention, fp32, CPU) on the
committed fixture test/golden/tiny-llama, with a PEFT LoRA adapter
(r=4, alpha=8, dropout 0, all seven linear projections, no rsLoRA), trained
for 10 steps by torch.optim.AdamW (lr 1e-3, betas (0.9, 0.999), eps 1e-8,
weight_decay 0.01, foreach=False, constant LR) with clip_grad_norm_(1.0) before
every step, on the same batch every step.

PEFT initialises lora_A (kaiming-uniform) and lora_B (zeros); we then overwrite
every lora_B with N(0, 0.05^2) drawn from torch.Generator seed 1234 (in
named_parameters order) so that the lora_A gradients are not zero at step 0.

Outputs, in test/golden/parity/ (committed, about 200 KB with nf4/):
  init_adapter/              the adapter before training (PEFT save_pretrained:
                             adapter_config.json + adapter_model.safetensors);
                             qlora-run loads it with --init-adapter.
  tokens.jsonl               the batch: 2 lines {"input_ids": [16 ints]}, ids
                             from torch.randint(0, 256) with generator seed 7.
                             labels = input_ids (the model shifts them).
  grads_step0.safetensors    the step-0 gradient of every LoRA parameter,
                             before clipping, keyed exactly as PEFT keys
                             adapter_model.safetensors (no ".default");
                             __metadata__ {"loss": repr of the step-0 loss}.
  adapter_step10/            the adapter after 10 optimizer steps.
  golden.json                per-step losses (each computed before that step's
                             update) and the global grad norms returned by
                             clip_grad_norm_ (before clipping), hyperparameters
                             and package versions.
With --base nf4 (needs `pip install bitsandbytes` too) the frozen weights of the
seven projections in every layer (every nn.Linear but lm_head, as transformers'
BitsAndBytesConfig(load_in_4bit) chooses) are replaced by
dequantize_4bit(quantize_4bit(W, blocksize=64, quant_type="nf4",
compress_statistics=True)) from bitsandbytes, in fp32, before training: the
base the CPU backend trains on once qloracc has quantized it. Same init
adapter and tokens; grads_step0.safetensors, adapter_step10/ and golden.json go
to test/golden/parity/nf4/.

The README.md model cards that save_pretrained writes are deleted (they carry
nothing the tests read). base_model_name_or_path in adapter_config.json is the
relative path "test/golden/tiny-llama", because the script runs from the
repository root.
"""
import argparse
import json
import os
import sys

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BASE = os.path.join("test", "golden", "tiny-llama")  # relative: lands in adapter_config.json
OUT = os.path.join("test", "golden", "parity")

R, ALPHA = 4, 8
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BATCH, SEQ, VOCAB = 2, 16, 256
STEPS = 10
LR, BETAS, EPS, WEIGHT_DECAY = 1e-3, (0.9, 0.999), 1e-8, 0.01
MAX_GRAD_NORM = 1.0
CLIP_MAX_GRAD_NORM = 0.25
B_INIT_STD, B_INIT_SEED, DATA_SEED = 0.05, 1234, 7
ADAPTER = "default"  # PEFT's adapter name, present in parameter names, absent in files


def peft_key(param_name):
    """Parameter name -> the key PEFT writes to adapter_model.safetensors."""
    return param_name.replace(f".{ADAPTER}.", ".")


def save_adapter(model, parent, name):
    out = os.path.join(parent, name)
    model.save_pretrained(out)
    card = os.path.join(out, "README.md")
    if os.path.exists(card):
        os.remove(card)
    return out


def nf4_roundtrip_linears(model):
    """Replaces the weight of every nn.Linear but lm_head by its NF4 round trip.

    Returns the names of the replaced weights."""
    import bitsandbytes.functional as bnbf
    names = []
    with torch.no_grad():
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear) or name.split(".")[-1] == "lm_head":
                continue
            if ".lora_" in name:
                continue
            w = module.weight
            q, state = bnbf.quantize_4bit(w.detach().to(torch.float32).contiguous(), blocksize=64,
                                          quant_type="nf4", compress_statistics=True)
            w.copy_(bnbf.dequantize_4bit(q, state).reshape(w.shape).to(w.dtype))
            names.append(name + ".weight")
    return names


def load_saved_keys(adapter_dir):
    from safetensors import safe_open
    with safe_open(os.path.join(adapter_dir, "adapter_model.safetensors"), "pt") as f:
        return set(f.keys())


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", choices=["fp32", "nf4"], default="fp32",
                        help="frozen weights as stored (fp32) or after an NF4 round trip")
    parser.add_argument("--clip", action="store_true",
                        help=f"clip at max_norm {CLIP_MAX_GRAD_NORM} (below every grad norm "
                             "of the run, so clipping scales every step) into parity/clip")
    args = parser.parse_args(argv)
    max_grad_norm = CLIP_MAX_GRAD_NORM if args.clip else MAX_GRAD_NORM
    if os.environ.get("PYTHONHASHSEED") != "0":
        # PEFT keeps target_modules as a set: fix str hashing so adapter_config.json
        # lists them in the same order on every run (regenerating gives no diff).
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    os.chdir(ROOT)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "peft": peft.__version__}
    if args.base == "nf4":
        import bitsandbytes
        versions["bitsandbytes"] = bitsandbytes.__version__
    out = OUT if args.base == "fp32" else os.path.join(OUT, "nf4")
    if args.clip:
        out = os.path.join(out, "clip")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), file=sys.stderr)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.manual_seed(0)  # PEFT's kaiming-uniform init of lora_A draws from the global RNG

    model = LlamaForCausalLM.from_pretrained(
        BASE, attn_implementation="eager", dtype=torch.float32)
    model.to("cpu")
    model = get_peft_model(model, LoraConfig(
        r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS, bias="none",
        task_type="CAUSAL_LM", use_rslora=False))
    model.train()

    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert all(".lora_A." in n or ".lora_B." in n for n, _ in params), "non-LoRA trainables"
    assert len(params) == 2 * 2 * len(TARGETS), len(params)
    gen = torch.Generator().manual_seed(B_INIT_SEED)
    with torch.no_grad():
        for n, p in params:
            if ".lora_B." in n:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * B_INIT_STD)

    os.makedirs(out, exist_ok=True)
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(DATA_SEED))
    if args.base == "fp32" and not args.clip:
        init_dir = save_adapter(model, OUT, "init_adapter")
        saved_keys = load_saved_keys(init_dir)
        ours = {peft_key(n) for n, _ in params}
        assert saved_keys == ours, (sorted(saved_keys ^ ours))
        with open(os.path.join(OUT, "tokens.jsonl"), "w") as f:
            for row in ids.tolist():
                f.write(json.dumps({"input_ids": row}) + "\n")
    else:
        # The nf4 run shares the fp32 run's init adapter and tokens: check they are ours.
        from safetensors.torch import load_file
        saved = load_file(os.path.join(OUT, "init_adapter", "adapter_model.safetensors"))
        assert all(torch.equal(saved[peft_key(n)], p) for n, p in params), \
            "init_adapter differs: run the plain fp32 run first"
        with open(os.path.join(OUT, "tokens.jsonl")) as f:
            assert [json.loads(x)["input_ids"] for x in f] == ids.tolist(), "tokens.jsonl differs"
    if args.base == "nf4":
        replaced = nf4_roundtrip_linears(model)
        assert len(replaced) == 2 * len(TARGETS), replaced

    opt = torch.optim.AdamW([p for _, p in params], lr=LR, betas=BETAS, eps=EPS,
                            weight_decay=WEIGHT_DECAY, foreach=False)
    losses, norms = [], []
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if step == 0:
            grads = {peft_key(n): p.grad.detach().clone().contiguous() for n, p in params}
            save_file(grads, os.path.join(out, "grads_step0.safetensors"),
                      metadata={"loss": repr(loss.item())})
        norm = torch.nn.utils.clip_grad_norm_([p for _, p in params], max_norm=max_grad_norm)
        opt.step()
        losses.append(loss.item())
        norms.append(norm.item())
        print(f"step {step}: loss {loss.item()!r} grad_norm {norm.item()!r}")

    save_adapter(model, out, "adapter_step10")
    golden = {"losses": losses, "grad_norms": norms, "lr": LR, "weight_decay": WEIGHT_DECAY,
              "max_grad_norm": max_grad_norm, "batch": BATCH, "seq": SEQ, "r": R,
              "alpha": ALPHA, "base": args.base, "versions": versions}
    with open(os.path.join(out, "golden.json"), "w") as f:
        # json writes floats with repr, i.e. exactly round-trippable.
        json.dump(golden, f, indent=1)
        f.write("\n")

    total = 0
    for dirpath, dirs, files in os.walk(out):
        dirs[:] = [d for d in dirs if d != "nf4"]
        total += sum(os.path.getsize(os.path.join(dirpath, x)) for x in files)
    print(f"{len(params)} LoRA tensors; loss {losses[0]!r} (step 0) -> {losses[-1]!r} "
          f"(step {STEPS - 1}); {out}: {total} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
