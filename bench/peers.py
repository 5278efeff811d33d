"""Python peers for bench/load.ts, each timed inside this process (startup and imports excluded).

  peers.py info                      which peers this Python has, as JSON labels
  peers.py safetensors FILE          safetensors.torch.load_file + one byte per 4 KiB page
  peers.py torch-load FILE.pt        torch.load(weights_only=True[, mmap=True]) + one byte per 4 KiB page
  peers.py convert FILE FILE.pt      writes the torch.save copy torch-load reads

Where the safetensors package is not importable (PyPI is unreachable here), `safetensors` runs the same torch
calls safetensors 0.8 makes for framework="pt" on CPU: the header parsed, the whole file opened as one
UntypedStorage.from_file(path, shared=False, size), and per tensor storage[start:stop] -> torch.asarray(uint8)
-> .view(dtype).reshape(shape). Its header parse is Python's json instead of Rust's serde, the only difference.
"""
import inspect
import json
import os
import struct
import sys
import time

import torch

DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32}
PAGE = 4096

try:
    from safetensors.torch import load_file  # type: ignore

    SAFETENSORS = "safetensors.torch.load_file"
except ImportError:
    load_file = None
    SAFETENSORS = "safetensors-0.8 pt path (emulated)"

TORCH_MMAP = "mmap" in inspect.signature(torch.load).parameters
TORCH_LOAD = f"torch {torch.__version__} load(weights_only{', mmap' if TORCH_MMAP else ''})"


def touch(t):
    u8 = t.reshape(-1).view(torch.uint8)
    return int(u8[::PAGE].sum()) + int(u8[-1]) if u8.numel() else 0


def emulated_load_file(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    storage = torch.UntypedStorage.from_file(path, False, os.path.getsize(path))
    out = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        start, stop = info["data_offsets"]
        u8 = torch.asarray(storage[8 + n + start : 8 + n + stop], dtype=torch.uint8)
        out[name] = u8.view(DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


def timed(load, path):
    t0 = time.perf_counter()
    tensors = load(path)
    checksum = sum(touch(t) for t in tensors.values())
    return {"seconds": time.perf_counter() - t0, "checksum": checksum}


def main():
    mode = sys.argv[1]
    if mode == "info":
        result = {"safetensors": SAFETENSORS, "torchLoad": TORCH_LOAD}
    elif mode == "safetensors":
        result = timed(load_file or emulated_load_file, sys.argv[2])
    elif mode == "torch-load":
        kwargs = {"weights_only": True, **({"mmap": True} if TORCH_MMAP else {})}
        result = timed(lambda p: torch.load(p, **kwargs), sys.argv[2])
    elif mode == "convert":
        tensors = {k: v.clone() for k, v in emulated_load_file(sys.argv[2]).items()}
        torch.save(tensors, sys.argv[3] + ".tmp")
        os.replace(sys.argv[3] + ".tmp", sys.argv[3])
        result = {"seconds": 0}
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result))


main()
