/**
 * tensormap: safe, fast safetensors (and PyTorch checkpoint) loading for Bun, Deno and Node.
 *
 * @example
 * ```ts
 * import { open } from "tensormap";
 * using file = await open("model.safetensors");
 * console.log(file.keys(), file.tensor(file.keys()[0]).shape);
 * ```
 * @module
 */
// Errors
export { SafetensorsError, type ErrorCode } from "./errors.ts";
// Opening and reading
export { fileFromSource, open, type OpenOptions } from "./open.ts";
export { SafetensorsFile, type FileLayout, type TensorEntry } from "./file.ts";
export { Tensor } from "./tensor.ts";
export type { SliceSpec } from "./slice.ts";
export { openCheckpoint, type Checkpoint } from "./checkpoint.ts";
export { openSharded, saveSharded, ShardedFile, type SaveShardedOptions, type ShardedTensorInfo } from "./sharded.ts";
// The format
export { DTYPES, dtypeInfo, type DType, type DTypeInfo, type TypedArray } from "./format/dtypes.ts";
export { parseHeader, type Header, type HeaderEntry, type TensorInfo } from "./format/header.ts";
export { planFile, save, serialize, type TensorData, type TensorMap } from "./format/writer.ts";
export { INDEX_FILE, parseSize } from "./format/sharded.ts";
// Byte sources
export type { Backend, ByteSource } from "./io/source.ts";
export { chooseBackend, openSource, type BackendChoice, type SourceOptions } from "./io/open-source.ts";
export { touchPages, type Advice, type MmapSource } from "./io/mmap.ts";
// Devices
export { loadToDevice, resolveDevice, toDevice, type DeviceLoadOptions, type DeviceTarget, type LoadProgress } from "./device/load.ts";
export { DeviceTensors, type CudaTensor, type DeviceTensor, type HostTensor } from "./device/tensors.ts";
export { parseDevice, type DeviceSpec } from "./device/spec.ts";
// PyTorch checkpoints
export { convert, type ConvertOptions, type ConvertResult } from "./pickle/convert.ts";
export { describeLeaf, isPytorch, openPytorchLayout, type PickleLayout } from "./pickle/index.ts";
