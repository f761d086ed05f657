#!/usr/bin/env python3
"""Writes a damaged copy of a bitsandbytes 4-bit checkpoint for error tests.

    make_bad_bnb4bit_checkpoint.py SRC_DIR OUT_DIR MUTATION

Standard library only. SRC_DIR must hold config.json and a single
model.safetensors as transformers saves a model loaded in 4 bits
(test/golden/bnb4bit). MUTATION is one of the keys of MUTATIONS below.
"""
import json
import os
import shutil
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_bad_checkpoint import (  # noqa: E402
    config_mutation,
    edit_config,
    tensor_mutation,
)

QUANT_STATE = ".quant_state.bitsandbytes__nf4"


def quant_state(t, key):
    return json.loads(t[key + QUANT_STATE][2])


def set_quant_state(t, key, state, suffix=QUANT_STATE):
    raw = json.dumps(state).encode()
    t.pop(key + QUANT_STATE)
    t[key + suffix] = ("U8", [len(raw)], raw)


def wrong_quant_map(t):
    name = "model.layers.0.self_attn.q_proj.weight.quant_map"
    dtype, shape, raw = t[name]
    t[name] = (dtype, shape, raw[:12] + struct.pack("<f", -0.4) + raw[16:])


def fp4_tensor(t):
    # As bitsandbytes saves an FP4 weight: its own key suffix and quant_type.
    key = "model.layers.0.self_attn.k_proj.weight"
    state = quant_state(t, key)
    state["quant_type"] = "fp4"
    set_quant_state(t, key, state, ".quant_state.bitsandbytes__fp4")


def missing_absmax(t):
    del t["model.layers.1.mlp.down_proj.weight.absmax"]


def absmax_size(t):
    name = "model.layers.0.mlp.up_proj.weight.absmax"
    dtype, shape, raw = t[name]
    t[name] = (dtype, [shape[0] - 1], raw[:-1])


def quant_state_shape(t):
    key = "model.layers.0.mlp.up_proj.weight"
    state = quant_state(t, key)
    state["shape"] = list(reversed(state["shape"]))
    set_quant_state(t, key, state)


def stray_companion(t):
    t["lm_head.weight.absmax"] = ("U8", [256], bytes(256))


def set_quantization(**changes):
    def change(config):
        config["quantization_config"].update(changes)
    return edit_config(change)


def drop_quantization(config):
    del config["quantization_config"]


MUTATIONS = {
    "wrong-quant-map": tensor_mutation(wrong_quant_map),
    "fp4-tensor": tensor_mutation(fp4_tensor),
    "missing-absmax": tensor_mutation(missing_absmax),
    "absmax-size": tensor_mutation(absmax_size),
    "quant-state-shape": tensor_mutation(quant_state_shape),
    "stray-companion": tensor_mutation(stray_companion),
    "load-in-8bit": config_mutation(set_quantization(
        load_in_8bit=True, load_in_4bit=False)),
    "fp4-config": config_mutation(set_quantization(bnb_4bit_quant_type="fp4")),
    "gptq": config_mutation(set_quantization(quant_method="gptq")),
    "no-quantization-config": config_mutation(edit_config(drop_quantization)),
}


def main():
    src, out, mutation = sys.argv[1:4]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    shutil.copy(os.path.join(src, "config.json"), out)
    MUTATIONS[mutation](src, out)


if __name__ == "__main__":
    main()
