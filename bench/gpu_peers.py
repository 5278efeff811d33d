"""Python peers for bench/gpu.ts: one process for the whole run (torch imported and CUDA started once, outside
every timing), driven by one JSON request per line on stdin, answering one JSON line each.

  gpu_peers.py DEVICE        cuda:0 on the GPU machine; cpu for `bench/gpu.ts --dry-run`

Requests (answers carry "error" instead when the call failed):
  {"op": "load_file" | "safe_open" | "torch_load", "files": [...], "hash": [names]}
      -> {"seconds", "first_seconds", "bytes", "tensors", "hashes": {name: hex}}
  {"op": "make_pt", "files": [...]}   -> {"files": [.pt paths], "made", "seconds"}   torch.save of each shard, fsynced
  {"op": "pinned", "bytes", "reps"}   -> {"gbps"}   torch's own pinned host->device copy, to cross-check the ceiling

Every timed load ends with torch.cuda.synchronize() on CUDA and keeps every tensor referenced until the clock
stops. Hashes (HASH below, the same as bench/gpu-checkpoint.ts) are taken after the clock stops.
"""
import gc
import hashlib
import json
import os
import sys
import time
import traceback

# The answers own the real stdout; anything a library prints (Python or C) goes to stderr instead.
ANSWERS = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)

HASH = "sha1"


def answer(obj):
    ANSWERS.write(json.dumps(obj) + "\n")
    ANSWERS.flush()


try:
    import safetensors
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file
except Exception as e:  # the parent reports this line and marks every peer row failed
    answer({"ready": False, "error": f"{type(e).__name__}: {e}"})
    sys.exit(1)

DEVICE = sys.argv[1] if len(sys.argv) > 1 else "cuda:0"
CUDA = DEVICE.startswith("cuda")


def sync():
    if CUDA:
        torch.cuda.synchronize()


def digest(t):
    return hashlib.new(HASH, t.contiguous().view(torch.uint8).cpu().numpy()).hexdigest()


def load_all_file(files):
    out = {}
    for f in files:
        out.update(load_file(f, device=DEVICE))
    return out


def load_all_safe_open(files, mark_first):
    out = {}
    for f in files:
        with safe_open(f, framework="pt", device=DEVICE) as st:
            for k in st.keys():
                out[k] = st.get_tensor(k)
                mark_first()
    return out


def load_all_torch(files):
    out = {}
    for f in files:
        out.update(torch.load(f, map_location=DEVICE, weights_only=True))
    return out


def timed_load(op, files, names):
    first = []
    t0 = time.perf_counter()

    def mark_first():
        if not first:
            sync()
            first.append(time.perf_counter() - t0)

    if op == "load_file":
        tensors = load_all_file(files)
    elif op == "safe_open":
        tensors = load_all_safe_open(files, mark_first)
    elif op == "torch_load":
        tensors = load_all_torch(files)
    else:
        raise ValueError(f"unknown op {op}")
    sync()
    seconds = time.perf_counter() - t0
    # load_file and torch.load hand back nothing before the whole dict: their first tensor comes with the last.
    result = {
        "seconds": seconds,
        "first_seconds": first[0] if first else seconds,
        "bytes": sum(t.numel() * t.element_size() for t in tensors.values()),
        "tensors": len(tensors),
        "hashes": {n: digest(tensors[n]) for n in names if n in tensors},
    }
    del tensors
    release()
    return result


def release():
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()


def make_pt(files):
    t0 = time.perf_counter()
    out, made = [], 0
    for f in files:
        pt = f[: -len(".safetensors")] + ".pt"
        if not os.path.exists(pt) or os.path.getmtime(pt) < os.path.getmtime(f):
            torch.save(load_file(f), pt + ".tmp")
            with open(pt + ".tmp", "rb+") as fh:
                os.fsync(fh.fileno())  # clean pages: the cold run's eviction can drop them
            os.replace(pt + ".tmp", pt)
            made += 1
        out.append(pt)
    release()
    return {"files": out, "made": made, "seconds": time.perf_counter() - t0}


def pinned(n, reps):
    if not CUDA:
        raise RuntimeError(f"no pinned copy on {DEVICE}")
    host = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    dev = torch.empty(n, dtype=torch.uint8, device=DEVICE)
    dev.copy_(host, non_blocking=True)
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        dev.copy_(host, non_blocking=True)
        sync()
        times.append(time.perf_counter() - t0)
    del host, dev
    release()
    return {"gbps": n / sorted(times)[len(times) // 2] / 1e9}


def serve(req):
    op = req["op"]
    if op == "make_pt":
        return make_pt(req["files"])
    if op == "pinned":
        return pinned(int(req["bytes"]), int(req["reps"]))
    return timed_load(op, req["files"], req.get("hash", []))


def main():
    torch.empty(1, device=DEVICE)  # CUDA's context, outside every timing
    sync()
    gpu = torch.cuda.get_device_name(torch.device(DEVICE)) if CUDA else None
    answer({"ready": True, "python": sys.version.split()[0], "torch": torch.__version__,
            "safetensors": safetensors.__version__, "device": DEVICE, "gpu": gpu})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer(serve(json.loads(line)))
        except Exception as e:
            traceback.print_exc()
            release()
            answer({"error": f"{type(e).__name__}: {e}".splitlines()[0]})


main()
