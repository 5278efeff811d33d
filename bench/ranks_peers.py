"""One rank of bench/ranks.ts, the way vLLM loads a tensor-parallel Llama: safetensors' safe_open, then
get_slice(name)[rows] or [:, cols] per weight copied out, under the same rules (column parallel on dim 0, row parallel on
dim 1, the vocabulary padded to 64, K/V heads replicated past their count). Rank and world size come from
RANK and WORLD_SIZE, as torchrun sets them. Prints "ready", waits for a line on stdin, loads, prints one JSON line:
seconds, bytes read from storage (/proc/self/io read_bytes) and the bytes it holds.

    RANK=1 WORLD_SIZE=4 python bench/ranks_peers.py FOLDER
"""

import json
import os
import re
import sys
import time

import torch
from safetensors import safe_open


def read_bytes():
    with open("/proc/self/io") as f:
        return int(re.search(r"read_bytes: (\d+)", f.read()).group(1))


def cut(name, shape, rank, world, config):
    """(dim, start, end) of the rank's part, or None for the whole tensor."""
    even = lambda dim: (dim, rank * shape[dim] // world, (rank + 1) * shape[dim] // world)
    if re.search(r"\.(q_proj|gate_proj|up_proj)\.weight$", name):
        return even(0)
    if re.search(r"\.(o_proj|down_proj)\.weight$", name):
        return even(1)
    if re.search(r"(embed_tokens|lm_head)\.weight$", name):
        per = -(-shape[0] // 64) * 64 // world
        return (0, min(rank * per, shape[0]), min((rank + 1) * per, shape[0]))
    if re.search(r"\.(k_proj|v_proj)\.weight$", name):
        kv = config["num_key_value_heads"]
        if world < kv:
            return even(0)
        head_dim = config["hidden_size"] // config["num_attention_heads"]
        head = rank // (world // kv)
        return (0, head * head_dim, (head + 1) * head_dim)
    return None


def main():
    # One thread per rank, as tensormap copies on one: several ranks share this machine's cores, and spinning
    # OpenMP threads of several processes on the same cores slow every one of them down.
    torch.set_num_threads(1)
    folder = sys.argv[1]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    print("ready", flush=True)
    sys.stdin.readline()
    io0 = read_bytes()
    t0 = time.perf_counter()
    held = {}
    with safe_open(os.path.join(folder, "model.safetensors"), framework="pt") as f:
        for name in f.keys():
            part = f.get_slice(name)
            c = cut(name, part.get_shape(), rank, world, config)
            if c is None:
                view = part[:]
            elif c[0] == 0:
                view = part[c[1] : c[2]]
            else:
                view = part[:, c[1] : c[2]]
            # get_slice gives a view of the file's mapping, read only when touched: copy it out, as vLLM's weight
            # loader copies it into the parameter.
            held[name] = view.clone(memory_format=torch.contiguous_format)
    seconds = time.perf_counter() - t0
    share = sum(t.numel() * t.element_size() for t in held.values())
    print(json.dumps({"seconds": seconds, "readBytes": read_bytes() - io0, "share": share}))


main()
