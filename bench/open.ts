/**
 * How long `open()` takes on a 20,000-tensor file (the header parse and validation dominate), against
 * peers measured in the same run: the floor of reading the header and `JSON.parse` on it (no checks at
 * all), and Python safetensors' `safe_open` when it is installed.
 *
 *   bun bench/open.ts      deno run -A bench/open.ts
 */
import { closeSync, openSync, readSync } from "node:fs";
import { save } from "../src/format/writer.ts";
import { open } from "../src/checkpoint/open.ts";
import { generated, header, medianMs, pythonMs, row } from "./support.ts";

const TENSORS = 20_000;
const RUNS = 21;

/** A model-shaped checkpoint: 20,000 small tensors with long dotted names and mixed dtypes. */
const path = await generated(`open-${TENSORS}.safetensors`, (p) => {
  const tensors = new Map<string, { dtype: "F32" | "BF16" | "F16"; shape: number[]; data: Uint8Array }>();
  const kinds = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm", "rotary"];
  for (let i = 0; tensors.size < TENSORS; i++) {
    const layer = Math.floor(i / (kinds.length * 2));
    const kind = kinds[Math.floor(i / 2) % kinds.length];
    const dtype = (["F32", "BF16", "F16"] as const)[i % 3]!;
    const shape = [1 + (i % 7), 1 + (i % 5)];
    const bytes = shape[0]! * shape[1]! * (dtype === "F32" ? 4 : 2);
    tensors.set(`model.layers.${layer}.${kind}.${i % 2 ? "bias" : "weight"}`, { dtype, shape, data: new Uint8Array(bytes).fill(i & 0xff) });
  }
  return save(p, tensors, { format: "pt", source: "tensormap bench" });
});

/** The floor: read `u64 N` and the header, decode, JSON.parse. No validation, no index. */
function jsonParseFloor(): number {
  const fd = openSync(path, "r");
  try {
    const prefix = new Uint8Array(8);
    readSync(fd, prefix, 0, 8, 0);
    const n = Number(new DataView(prefix.buffer).getBigUint64(0, true));
    const text = new Uint8Array(n);
    readSync(fd, text, 0, n, 8);
    return Object.keys(JSON.parse(new TextDecoder().decode(text))).length;
  } finally {
    closeSync(fd);
  }
}

header(`open() of ${TENSORS} tensors`);
const floor = await medianMs(jsonParseFloor, RUNS);
const readBackend = await medianMs(async () => (await open(path, { backend: "read" })).close(), RUNS);
const auto = await medianMs(async () => (await open(path)).close(), RUNS);
const python = pythonMs(
  "safetensors",
  `import time, statistics
from safetensors import safe_open
def once():
    with safe_open(${JSON.stringify(path)}, framework="numpy") as f:
        f.keys()
for _ in range(2): once()
ts = []
for _ in range(${RUNS}):
    t0 = time.perf_counter(); once(); ts.append((time.perf_counter() - t0) * 1000)
print(statistics.median(ts))`,
);
row("read header + JSON.parse (baseline)", floor, floor);
row("open(path, { backend: \"read\" })", readBackend, floor);
row("open(path) (default backend)", auto, floor);
row("python safetensors safe_open", python, floor);
