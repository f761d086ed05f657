#!/usr/bin/env python3
"""Writes a damaged copy of a Hugging Face checkpoint for error tests.

    make_bad_checkpoint.py SRC_DIR OUT_DIR MUTATION

Standard library only (tests never need PyPI packages). SRC_DIR must hold a
single model.safetensors. MUTATION is one of the keys of MUTATIONS below.
"""
import json
import os
import shutil
import struct
import sys


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", None)
    data = blob[8 + n:]
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        tensors[name] = (entry["dtype"], entry["shape"], data[begin:end])
    return tensors, meta


def write_safetensors(path, tensors, meta=None, fix_offsets=None):
    header, chunks, offset = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if fix_offsets:
        fix_offsets(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def drop_tensor(t):
    del t["model.norm.weight"]


def add_tensor(t):
    t["model.layers.0.self_attn.q_proj.bias"] = ("F32", [64], bytes(256))


def wrong_shape(t):
    dtype, shape, raw = t["model.layers.1.mlp.up_proj.weight"]
    t["model.layers.1.mlp.up_proj.weight"] = (dtype, [shape[1], shape[0]], raw)


def wrong_dtype(t):
    dtype, shape, raw = t["lm_head.weight"]
    t["lm_head.weight"] = ("I32", shape, raw)


def offsets_past_end(header):
    header["model.norm.weight"]["data_offsets"][1] += 4096


def tensor_mutation(mutate=None, fix_offsets=None):
    def apply(src, out):
        tensors, meta = read_safetensors(os.path.join(src, "model.safetensors"))
        if mutate:
            mutate(tensors)
        write_safetensors(os.path.join(out, "model.safetensors"), tensors,
                          meta, fix_offsets)
    return apply


def config_mutation(edit):
    def apply(src, out):
        shutil.copy(os.path.join(src, "model.safetensors"), out)
        path = os.path.join(out, "config.json")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(edit(text))
    return apply


def edit_config(change):
    def edit(text):
        config = json.loads(text)
        change(config)
        return json.dumps(config, indent=2)
    return edit


def llama3_v4_rope(config):
    # transformers 4.x spelling: top-level rope_theta plus rope_scaling.
    config.pop("rope_parameters", None)
    config["rope_theta"] = 500000.0
    config["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0,
                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192}


def yarn_rope(config):
    config["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0,
                                 "rope_theta": 10000.0}


MUTATIONS = {
    "missing-tensor": tensor_mutation(drop_tensor),
    "extra-tensor": tensor_mutation(add_tensor),
    "wrong-shape": tensor_mutation(wrong_shape),
    "wrong-dtype": tensor_mutation(wrong_dtype),
    "offsets-past-end": tensor_mutation(fix_offsets=offsets_past_end),
    "unsupported-architecture": config_mutation(edit_config(
        lambda c: c.update(architectures=["GPT2LMHeadModel"]))),
    "malformed-json": config_mutation(lambda text: text[:40]),
    "missing-key": config_mutation(edit_config(
        lambda c: c.pop("hidden_size"))),
    "llama3-rope-v4-config": config_mutation(edit_config(llama3_v4_rope)),
    "yarn-rope": config_mutation(edit_config(yarn_rope)),
    "gelu": config_mutation(edit_config(
        lambda c: c.update(hidden_act="gelu"))),
    "attention-bias": config_mutation(edit_config(
        lambda c: c.update(attention_bias=True))),
    "kv-heads": config_mutation(edit_config(
        lambda c: c.update(num_key_value_heads=3))),
}


def main():
    src, out, mutation = sys.argv[1:4]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    shutil.copy(os.path.join(src, "config.json"), out)
    MUTATIONS[mutation](src, out)


if __name__ == "__main__":
    main()
