"""Python peers for bench/pickle.ts (run with Debian's /usr/bin/python3 and python3-torch).

  make-bin SRC.safetensors DST.bin   torch.save the tensors of a safetensors file (read with torch only)
  load MODE TOUCH PATH               MODE: torch | torch-mmap | safetensors; TOUCH: tensor | page (as
                                     bench/pickle-child.ts touches); prints {"ms": in-process time}
  evict PATH...                      drops the files from the page cache (posix_fadvise DONTNEED)
"""
import json, mmap, os, sys, time

def make_bin(src, dst):
    import torch
    dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "I64": torch.int64}
    with open(src, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        n = int.from_bytes(mm[:8], "little")
        header = json.loads(mm[8:8 + n])
        sd = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            dt = dtypes[info["dtype"]]
            count = (end - start) // torch.tensor([], dtype=dt).element_size()
            t = torch.frombuffer(mm, dtype=dt, count=count, offset=8 + n + start) if count else torch.empty(0, dtype=dt)
            sd[name] = t.reshape(info["shape"]).clone()
    # Written aside and renamed, so an interrupted run leaves no half file for the next run to reuse.
    torch.save(sd, dst + ".tmp")
    os.sync()
    os.replace(dst + ".tmp", dst)

PAGE = 4096

def touch(sd, how):
    """`tensor`: the first and last byte of every tensor; `page`: one byte of every 4 KiB page, and the last."""
    import torch
    s = 0
    for t in sd.values():
        if t.numel():
            u8 = t.reshape(-1).view(torch.uint8)
            s += int(u8[::PAGE].sum()) if how == "page" else int(u8[0])
            s += int(u8[-1])
    return s

def load(mode, how, path):
    import torch
    t0 = time.perf_counter()
    if mode == "torch":
        sd = torch.load(path, map_location="cpu", weights_only=True)
    elif mode == "torch-mmap":
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    else:
        from safetensors.torch import load_file
        sd = load_file(path)
    touch(sd, how)
    print(json.dumps({"ms": (time.perf_counter() - t0) * 1000, "tensors": len(sd)}))

def evict(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make-bin":
        make_bin(*args)
    elif cmd == "load":
        load(*args)
    elif cmd == "evict":
        evict(args)
    else:
        sys.exit(f"unknown command {cmd}")
