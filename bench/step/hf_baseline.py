#!/usr/bin/env python3
"""One QLoRA training step with transformers + PEFT + bitsandbytes, timed.

    python3 bench/step/hf_baseline.py --preset llama2-7b [--steps 7]
        [--seq 2048] [--batch 1] [--data tokens.u16] [--device cuda]
    python3 bench/step/hf_baseline.py --preset tiny-test --device cpu

The baseline bench/step/run.sh runs next to qlora-run: the model of a qloracc
preset (the shapes of compiler/Importer/Presets.cpp) with random weights (std
0.02, no checkpoint on disk), every decoder linear layer a bitsandbytes
Linear4bit (NF4, double quantization, blocksize 64, bf16 compute) quantized
as it lands on the device, the embeddings, norms and LM head in bf16 as in
QLoRA, LoRA r=64 alpha=16 dropout 0 on all linear layers (PEFT's
"all-linear": every decoder projection, not the LM head) with fp32
adapters, gradient checkpointing per decoder layer (use_reentrant=False),
SDPA attention, bf16 autocast (what the Trainer's bf16=True does), gradient
clipping at 1.0 and torch.optim.AdamW (lr 2e-4, no weight decay) on the
LoRA parameters: qlora-run's defaults.

The model is built on the meta device and each linear layer is materialised
and quantized one at a time, so the bf16 weights of the whole model never sit
on the device together and the peak is that of training, not of loading.

Prints one JSON line per step (step, loss, tokens_per_s, elapsed_s) and a
last line {"summary": ...} with the peak memory torch saw
(max_memory_allocated / max_memory_reserved) and the setup time.
"""
import argparse
import json
import math
import os
import sys
import time
import warnings

import torch

# name: vocab, hidden, intermediate, layers, heads, kv heads, max positions,
# rms_norm_eps, rope_theta, llama3 rope scaling; as compiler/Importer/Presets.cpp.
PRESETS = {
    "llama2-7b": (32000, 4096, 11008, 32, 32, 32, 4096, 1e-5, 10000.0, False),
    "llama2-13b": (32000, 5120, 13824, 40, 40, 40, 4096, 1e-5, 10000.0, False),
    "llama3-8b": (128256, 4096, 14336, 32, 32, 8, 131072, 1e-5, 500000.0, True),
    # For testing the script on a CPU: the qloracc `tiny` preset's shapes.
    "tiny": (256, 64, 128, 2, 4, 2, 256, 1e-5, 10000.0, False),
    "tiny-test": (256, 64, 128, 2, 4, 2, 256, 1e-5, 10000.0, False),
}
# Llama 3.1's rope scaling, as compiler/Importer/ModelConfig.h's Llama3RopeScaling.
LLAMA3_ROPE = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
INIT_STD = 0.02


def make_config(preset):
    from transformers import LlamaConfig
    (vocab, hidden, inter, layers, heads, kv, max_pos, eps, theta,
     llama3) = PRESETS[preset]
    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                  num_hidden_layers=layers, num_attention_heads=heads,
                  num_key_value_heads=kv, max_position_embeddings=max_pos,
                  rms_norm_eps=eps, tie_word_embeddings=False, use_cache=False)
    rope = {"rope_type": "llama3", **LLAMA3_ROPE} if llama3 else {
        "rope_type": "default"}
    try:  # transformers 5: rope_parameters holds theta and the scaling
        config = LlamaConfig(**common, rope_parameters={**rope,
                                                        "rope_theta": theta})
        assert config.rope_parameters["rope_theta"] == theta
    except (TypeError, AssertionError, KeyError):  # transformers 4
        config = LlamaConfig(**common, rope_theta=theta,
                             rope_scaling=rope if llama3 else None)
    config._attn_implementation = "sdpa"
    return config


def build_model(config, device):
    """The preset's model with NF4 decoder linears, built without ever holding
    all bf16 weights on `device` at once."""
    import bitsandbytes as bnb
    from transformers import LlamaForCausalLM
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    generator = torch.Generator(device=device).manual_seed(0)

    def normal(shape):
        return torch.empty(shape, dtype=torch.bfloat16, device=device).normal_(
            0.0, INIT_STD, generator=generator)

    with torch.device("meta"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, linear in list(parent.named_children()):
                if not isinstance(linear, torch.nn.Linear):
                    continue
                quantized = bnb.nn.Linear4bit(
                    linear.in_features, linear.out_features, bias=False,
                    compute_dtype=torch.bfloat16, compress_statistics=True,
                    quant_type="nf4", quant_storage=torch.uint8, device="meta")
                weight = normal((linear.out_features, linear.in_features))
                # Params4bit quantizes on its first move to a device; the
                # bf16 copy is dropped right after.
                quantized.weight = bnb.nn.Params4bit(
                    weight, requires_grad=False, blocksize=64,
                    compress_statistics=True, quant_type="nf4",
                    quant_storage=torch.uint8, module=quantized,
                ).to(device)
                del weight
                setattr(parent, name, quantized)
    # Embeddings, norms and the LM head: bf16, random (norms: ones).
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            continue
        for name, param in list(module.named_parameters(recurse=False)):
            if not param.is_meta:
                continue
            data = (torch.ones(param.shape, dtype=torch.bfloat16, device=device)
                    if "norm" in type(module).__name__.lower()
                    else normal(param.shape))
            setattr(module, name, torch.nn.Parameter(data, requires_grad=False))
    # The rotary tables are fp32 buffers computed at construction: redo them
    # on the device.
    with torch.device(device):
        model.model.rotary_emb = LlamaRotaryEmbedding(config)
    leftover = [n for n, t in list(model.named_parameters()) +
                list(model.named_buffers()) if t.is_meta]
    if leftover:
        sys.exit(f"hf_baseline: still on the meta device: {leftover[:5]}")
    # What from_pretrained(quantization_config=BitsAndBytesConfig(...)) sets;
    # PEFT reads it to pick its bitsandbytes LoRA layer.
    model.is_loaded_in_4bit = True
    return model


def enable_checkpointing(model):
    kwargs = {"use_reentrant": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(kwargs)
        else:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs=kwargs)


def load_tokens(path, count, vocab, seed):
    if path:
        with open(path, "rb") as f:
            data = f.read()
        tokens = torch.frombuffer(bytearray(data), dtype=torch.int16)
        tokens = tokens.to(torch.int32) & 0xFFFF
        if tokens.numel() < count:
            sys.exit(f"hf_baseline: {path}: {tokens.numel()} tokens, "
                     f"need {count} (steps x batch x (seq+1))")
        return tokens[:count].remainder(vocab).to(torch.long)
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (count,), generator=generator)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--seq", type=int, default=None,
                        help="default: 2048, 32 for tiny and tiny-test")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--alpha", type=float, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--data", help="little-endian uint16 tokens (.u16), "
                        "cut into windows of seq+1 like qlora-run; default: "
                        "random tokens")
    parser.add_argument("--no-autocast", action="store_true",
                        help="no bf16 autocast: PEFT's fp32 LoRA matmuls")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    seq = args.seq or (32 if args.preset.startswith("tiny") else 2048)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)

    from peft import LoraConfig, get_peft_model
    import bitsandbytes
    import peft
    import transformers

    start = time.perf_counter()
    config = make_config(args.preset)
    model = build_model(config, device)
    enable_checkpointing(model)
    model = get_peft_model(model, LoraConfig(
        r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0,
        target_modules="all-linear", bias="none", task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    lora_dtypes = sorted({str(p.dtype) for p in params})
    lora_count = sum(p.numel() for p in params)
    lora_modules = sum(1 for n, _ in model.named_modules()
                       if n.endswith(".lora_A"))
    lora_layers = sorted({f"{type(m).__module__}.{type(m).__name__}"
                          for m in model.modules() if hasattr(m, "lora_A")})
    frozen_4bit = sum(1 for p in model.parameters()
                      if type(p).__name__ == "Params4bit" and p.bnb_quantized)
    checkpointed = sum(1 for m in model.modules()
                       if getattr(m, "gradient_checkpointing", False))
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    window = seq + 1
    tokens = load_tokens(args.data, args.steps * args.batch * window,
                         config.vocab_size, args.seed)
    tokens = tokens.view(args.steps, args.batch, window)
    synchronize(device)
    setup_s = time.perf_counter() - start
    print(json.dumps({
        "setup_s": round(setup_s, 3), "preset": args.preset, "seq": seq,
        "batch": args.batch, "lora_params": lora_count,
        "lora_modules": lora_modules, "lora_dtypes": lora_dtypes,
        "lora_layers": lora_layers, "nf4_weights": frozen_4bit,
        "checkpointed_modules": checkpointed,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "peft": peft.__version__, "bitsandbytes": bitsandbytes.__version__,
        "attn": config._attn_implementation,
        "autocast": not args.no_autocast}), flush=True)

    run_start = time.perf_counter()
    for step in range(1, args.steps + 1):
        input_ids = tokens[step - 1, :, :seq].to(device)
        synchronize(device)
        step_start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=not args.no_autocast):
            loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        now = time.perf_counter()
        step_s = now - step_start
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            sys.exit(f"hf_baseline: step {step}: the loss is {loss_value}")
        print(json.dumps({
            "step": step, "loss": loss_value,
            "grad_norm": float(grad_norm),
            "tokens_per_s": args.batch * seq / step_s,
            "elapsed_s": now - run_start}), flush=True)

    summary = {"setup_s": setup_s}
    if device.type == "cuda":
        summary.update(
            max_memory_allocated_bytes=torch.cuda.max_memory_allocated(device),
            max_memory_reserved_bytes=torch.cuda.max_memory_reserved(device),
            gpu=torch.cuda.get_device_name(device))
    print(json.dumps({"summary": summary}), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
