#!/usr/bin/env python3
"""Round trip of qloracc-quantize's model directories through transformers +
bitsandbytes. Run by a developer (not CI: it needs torch), from the
repository root, after building the tool:

    test/golden/.venv/bin/python test/golden/roundtrip_bnb4bit.py \
        [--tool build-quant/bin/qloracc-quantize]

For each case it runs `qloracc-quantize SRC -o OUT` and then checks that

  1. AutoModelForCausalLM.from_pretrained(OUT) (bitsandbytes on the CPU)
     loads it, and every Linear4bit's packed weight and quant_state (absmax,
     code, blocksize, shape, dtype, and the nested absmax / code / offset)
     equal what bitsandbytes' quantize_4bit makes from the source weight;
  2. save_pretrained of the loaded model writes OUT again, byte for byte
     (one-file checkpoints: transformers re-shards a sharded one by size);
  3. a forward pass gives logits identical (torch.equal) to those of the
     model transformers quantized itself from SRC with the same
     BitsAndBytesConfig.

Cases: tiny-llama (fp32) with the default options, with
--no-double-quant, and with --block-size 32 --dq-block-size 128 (no logits
check: BitsAndBytesConfig has no block sizes), and tiny-mistral-sharded
(bf16, two shards). Prints one line per check and a PASS/FAIL summary; exits 1 on a
failure.
"""

import argparse
import filecmp
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TORCH_COMPILE_DISABLE", "1")

import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, BitsAndBytesConfig  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

results = []


def check(name, ok, detail=""):
    results.append((name, bool(ok)))
    print(f"  {'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")


def quantize_4bit(weight, blocksize, double_quant, nested_blocksize):
    """bitsandbytes' quantize_4bit, with the nested block size that
    Params4bit cannot set (it calls quantize_4bit with the default 256)."""
    packed, state = F.quantize_4bit(
        weight, blocksize=blocksize, quant_type="nf4",
        compress_statistics=double_quant and nested_blocksize == 256)
    if double_quant and nested_blocksize != 256:
        offset = state.absmax.mean()
        codes, state2 = F.quantize_blockwise(state.absmax - offset,
                                             blocksize=nested_blocksize)
        state = F.QuantState(absmax=codes, shape=state.shape, code=state.code,
                             blocksize=blocksize, quant_type="nf4",
                             dtype=state.dtype, offset=offset, state2=state2)
    return packed, state


def same_state(ours, ref):
    """Mismatching fields of two bitsandbytes QuantStates ([] when equal)."""
    bad = []
    for field in ("absmax", "code"):
        if not torch.equal(getattr(ours, field), getattr(ref, field)):
            bad.append(field)
    for field in ("blocksize", "shape", "dtype", "quant_type", "nested"):
        if getattr(ours, field) != getattr(ref, field):
            bad.append(f"{field} {getattr(ours, field)} != {getattr(ref, field)}")
    if ref.nested:
        if not torch.equal(ours.offset, ref.offset):
            bad.append(f"offset {ours.offset.item()!r} != {ref.offset.item()!r}")
        for field in ("absmax", "code"):
            if not torch.equal(getattr(ours.state2, field), getattr(ref.state2, field)):
                bad.append("nested " + field)
        if ours.state2.blocksize != ref.state2.blocksize:
            bad.append("nested blocksize")
    return bad


def run_case(tool, src, dtype, args, double_quant=True, blocksize=64,
             nested_blocksize=256, resave=True, logits=True):
    print(f"case {os.path.relpath(src, ROOT)} {' '.join(args)}".rstrip())
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "nf4")
        proc = subprocess.run([tool, src, "-o", out, *args],
                              capture_output=True, text=True)
        check("qloracc-quantize runs", proc.returncode == 0,
              (proc.stdout if proc.returncode == 0 else proc.stderr).strip())
        if proc.returncode:
            return

        ours = AutoModelForCausalLM.from_pretrained(out, device_map="cpu")
        source = AutoModelForCausalLM.from_pretrained(src, dtype=dtype)
        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=double_quant,
            bnb_4bit_compute_dtype=dtype)
        theirs = AutoModelForCausalLM.from_pretrained(
            src, quantization_config=config, device_map="cpu", dtype=dtype)

        # 1. Every Linear4bit against bitsandbytes' quantize_4bit.
        source_weights = dict(source.named_parameters())
        linears = [(n, m) for n, m in ours.named_modules()
                   if isinstance(m, bnb.nn.Linear4bit)]
        bad = []
        for name, module in linears:
            weight = source_weights[name + ".weight"].data
            packed, state = quantize_4bit(weight, blocksize, double_quant,
                                          nested_blocksize)
            if not torch.equal(module.weight.data, packed):
                bad.append(f"{name}: packed weight")
            bad += [f"{name}: {b}" for b in same_state(module.weight.quant_state, state)]
        check(f"{len(linears)} Linear4bit weights and quant_states equal bitsandbytes'",
              linears and not bad, "; ".join(bad[:3]))
        check("lm_head and embeddings stay unquantized",
              not isinstance(ours.get_output_embeddings(), bnb.nn.Linear4bit))

        # 2. save_pretrained writes our files again (before any forward pass:
        # bitsandbytes' CPU forward repacks the weights in place).
        if resave:
            again = os.path.join(tmp, "resaved")
            # transformers 5.23 cannot revert the bitsandbytes
            # deserialization of a pre-quantized model
            # (Bnb4bitDeserialize has no reverse_op): save it as it is.
            ours.save_pretrained(again, save_original_format=False)
            names = sorted(os.listdir(out))
            match, mismatch, errors = filecmp.cmpfiles(out, again, names, shallow=False)
            extra = sorted(set(os.listdir(again)) - set(names))
            check(f"save_pretrained rewrites {len(names)} files byte for byte",
                  not mismatch and not errors and not extra,
                  f"same: {', '.join(match)}"
                  + (f"; differ: {mismatch}" if mismatch else "")
                  + (f"; missing: {errors}" if errors else "")
                  + (f"; extra: {extra}" if extra else ""))

        # 3. Logits against the model transformers quantized itself (which
        # only knows bitsandbytes' default block sizes).
        if not logits:
            return
        torch.manual_seed(0)
        ids = torch.randint(0, ours.config.vocab_size, (2, 17))
        with torch.no_grad():
            a = ours(ids).logits
            b = theirs(ids).logits
        check("logits identical to transformers' own 4-bit model",
              torch.equal(a, b), f"max |diff| {(a.float() - b.float()).abs().max().item():.3g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", default=os.path.join(ROOT, "build-quant", "bin",
                                                       "qloracc-quantize"))
    tool = parser.parse_args().tool
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, bitsandbytes {bnb.__version__}, "
          f"transformers {__import__('transformers').__version__}; {tool}")

    llama = os.path.join(HERE, "tiny-llama")
    mistral = os.path.join(HERE, "tiny-mistral-sharded")
    run_case(tool, llama, torch.float32, [])
    run_case(tool, llama, torch.float32, ["--no-double-quant"], double_quant=False)
    run_case(tool, llama, torch.float32,
             ["--block-size", "32", "--dq-block-size", "128"],
             blocksize=32, nested_blocksize=128, logits=False)
    run_case(tool, mistral, torch.bfloat16, [], resave=False)

    failed = [name for name, ok in results if not ok]
    print(f"{'PASS' if not failed else 'FAIL'}: {len(results) - len(failed)}/{len(results)} checks passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
