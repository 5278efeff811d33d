/**
 * Small Llama- and GPT-2-shaped checkpoints for the tensor-parallel tests: the tensors each model has (names and
 * shapes as Hugging Face stores them), filled with deterministic noise, and the config.json the plans read.
 */
import { DTYPES, type DType } from "../../src/format/dtypes.ts";
import type { TensorData } from "../../src/format/writer.ts";

let seed = 1;
/** Deterministic noise: every byte of every tensor differs from its neighbours' often enough to catch a misplaced run. */
export function tensor(dtype: DType, ...shape: number[]): TensorData {
  const n = (shape.reduce((a, b) => a * b, 1) * DTYPES.get(dtype)!.bits) / 8;
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = (seed = (seed * 1103515245 + 12345) % 2 ** 31) >>> 16;
  return { dtype, shape, data };
}

/** A small Llama: 8 heads of 32, 2 K/V heads (so 4 ranks replicate them), a vocabulary that is no multiple of 64. */
export const LLAMA_CONFIG = { model_type: "llama", hidden_size: 256, num_attention_heads: 8, num_key_value_heads: 2, intermediate_size: 768, vocab_size: 1000 };
/** A Llama's tensors under Hugging Face's names, `[out, in]`, bf16: embedding, `layers` decoder layers, norm, head. */
export function llamaTensors(layers: number, c = LLAMA_CONFIG): Record<string, TensorData> {
  const kv = (c.hidden_size / c.num_attention_heads) * c.num_key_value_heads;
  const out: Record<string, TensorData> = { "model.embed_tokens.weight": tensor("BF16", c.vocab_size, c.hidden_size) };
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    Object.assign(out, {
      [`${p}.input_layernorm.weight`]: tensor("BF16", c.hidden_size),
      [`${p}.self_attn.q_proj.weight`]: tensor("BF16", c.hidden_size, c.hidden_size),
      [`${p}.self_attn.k_proj.weight`]: tensor("BF16", kv, c.hidden_size),
      [`${p}.self_attn.v_proj.weight`]: tensor("BF16", kv, c.hidden_size),
      [`${p}.self_attn.o_proj.weight`]: tensor("BF16", c.hidden_size, c.hidden_size),
      [`${p}.post_attention_layernorm.weight`]: tensor("BF16", c.hidden_size),
      [`${p}.mlp.gate_proj.weight`]: tensor("BF16", c.intermediate_size, c.hidden_size),
      [`${p}.mlp.up_proj.weight`]: tensor("BF16", c.intermediate_size, c.hidden_size),
      [`${p}.mlp.down_proj.weight`]: tensor("BF16", c.hidden_size, c.intermediate_size),
    });
  }
  return { ...out, "model.norm.weight": tensor("BF16", c.hidden_size), "lm_head.weight": tensor("BF16", c.vocab_size, c.hidden_size) };
}

/** A small GPT-2: 8 heads, 2 layers, a vocabulary that is no multiple of 64. */
export const GPT2_CONFIG = { model_type: "gpt2", n_embd: 128, n_head: 8, n_layer: 2, n_positions: 64, vocab_size: 1000 };
/** GPT-2's tensors under Hugging Face's names, Conv1D weights `[in, out]`, f32. */
export function gpt2Tensors(c = GPT2_CONFIG): Record<string, TensorData> {
  const e = c.n_embd;
  const out: Record<string, TensorData> = { "wte.weight": tensor("F32", c.vocab_size, e), "wpe.weight": tensor("F32", c.n_positions, e) };
  for (let l = 0; l < c.n_layer; l++) {
    const p = `h.${l}`;
    Object.assign(out, {
      [`${p}.ln_1.weight`]: tensor("F32", e),
      [`${p}.ln_1.bias`]: tensor("F32", e),
      [`${p}.attn.c_attn.weight`]: tensor("F32", e, 3 * e),
      [`${p}.attn.c_attn.bias`]: tensor("F32", 3 * e),
      [`${p}.attn.c_proj.weight`]: tensor("F32", e, e),
      [`${p}.attn.c_proj.bias`]: tensor("F32", e),
      [`${p}.ln_2.weight`]: tensor("F32", e),
      [`${p}.mlp.c_fc.weight`]: tensor("F32", e, 4 * e),
      [`${p}.mlp.c_fc.bias`]: tensor("F32", 4 * e),
      [`${p}.mlp.c_proj.weight`]: tensor("F32", 4 * e, e),
      [`${p}.mlp.c_proj.bias`]: tensor("F32", e),
    });
  }
  return { ...out, "ln_f.weight": tensor("F32", e), "ln_f.bias": tensor("F32", e) };
}
