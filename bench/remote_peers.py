"""Python peers for bench/remote.ts: download a remote checkpoint, then load it with safetensors; timed inside this
process (startup and imports excluded) until every tensor is in memory (one byte per 4 KiB page read).

  remote_peers.py boto3 ENDPOINT BUCKET KEY DIR     boto3 download_file (its TransferConfig: threads, 8 MiB parts),
                                                    credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
  remote_peers.py hub REPO FILE DIR                 huggingface_hub hf_hub_download (HF_ENDPOINT names the server)

Each prints one JSON line: {"seconds", "download", "cpu" (this process's CPU seconds, every thread), "checksum"};
DIR is where the download goes (removed by the caller).
"""
import json
import os
import sys
import time

import torch
from safetensors.torch import load_file

PAGE = 4096


def in_memory(path):
    tensors = load_file(path)
    return sum(int(t.reshape(-1).view(torch.uint8)[::PAGE].sum()) for t in tensors.values())


def boto3_download(endpoint, bucket, key, folder):
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=32),
    )
    path = os.path.join(folder, os.path.basename(key))
    # The transfer manager's defaults, written out: 8 MiB parts, 10 threads.
    s3.download_file(bucket, key, path, Config=TransferConfig(multipart_chunksize=8 << 20, max_concurrency=10))
    return path


def hub_download(repo, filename, folder):
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo, filename, cache_dir=folder)


def main():
    mode, *args = sys.argv[1:]
    download = {"boto3": boto3_download, "hub": hub_download}[mode]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    path = download(*args)
    t1 = time.perf_counter()
    checksum = in_memory(path)
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "download": t1 - t0, "cpu": time.process_time() - cpu0, "checksum": checksum}))


main()
