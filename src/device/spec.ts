import { SafetensorsError } from "../errors.ts";

/** A parsed device string: `cpu`, `auto` (the GPU when one is usable, else cpu), or a CUDA device index. */
export type DeviceSpec = { kind: "cpu" } | { kind: "auto" } | { kind: "cuda"; index: number };

/**
 * Parses `"cpu"`, `"auto"`, `"cuda"` (device 0) or `"cuda:N"`.
 *
 * @example
 * ```ts
 * import { parseDevice, SafetensorsError } from "tensormap";
 * parseDevice("cuda:1"); // { kind: "cuda", index: 1 }
 * try {
 *   parseDevice("gpu");
 * } catch (e) {
 *   console.log(e instanceof SafetensorsError && e.code); // "InvalidArgument"
 * }
 * ```
 */
export function parseDevice(spec: string): DeviceSpec {
  if (spec === "cpu" || spec === "auto") return { kind: spec };
  if (spec === "cuda") return { kind: "cuda", index: 0 };
  const m = /^cuda:(0|[1-9][0-9]{0,3})$/.exec(spec);
  if (m) return { kind: "cuda", index: Number(m[1]) };
  throw new SafetensorsError("InvalidArgument", `unknown device ${JSON.stringify(spec)} (use cpu, auto, cuda or cuda:N)`);
}
