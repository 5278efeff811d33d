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
export { open, openCheckpoint, openSharded, resolveCheckpoint, withCheckpoint, type CheckpointPath, type OpenOptions } from "./checkpoint/open.ts";
export type { Checkpoint, CheckpointFile, CheckpointFormat } from "./checkpoint/checkpoint.ts";
export { fileFromSource, SafetensorsFile } from "./checkpoint/file.ts";
export type { FileLayout, TensorEntry, TensorInfo } from "./format/layout.ts";
export { Tensor } from "./checkpoint/tensor.ts";
export type { SliceSpec } from "./checkpoint/slice.ts";
export { fetchSlice } from "./checkpoint/remote.ts";
export { ShardedFile } from "./checkpoint/sharded.ts";
export { saveSharded, type SaveShardedOptions } from "./checkpoint/save.ts";
// The format
export { DTYPES, dtypeInfo, type DType, type DTypeInfo, type TypedArray } from "./format/dtypes.ts";
export { parseHeader, type Header } from "./format/header.ts";
export { planFile, save, serialize, type TensorData, type TensorMap } from "./format/writer.ts";
export { INDEX_FILE, parseSize } from "./format/sharded.ts";
export { CAST_TARGETS, castBytes, castDtype, type CastTarget } from "./format/cast.ts";
// Byte sources
export type { Backend, ByteSource } from "./io/source.ts";
export { chooseBackend, openSource, type BackendChoice, type SourceOptions } from "./io/open-source.ts";
export { touchPages, type Advice, type MmapSource } from "./io/mmap.ts";
export { discardUnfinished } from "./io/commit.ts";
export { isRemoteUrl } from "./io/remote/url.ts";
export type { RemoteOptions, RemoteProgress } from "./io/remote/options.ts";
// Devices
export { loadToDevice, resolveDevice, toDevice, type DeviceLoadOptions, type DeviceTarget, type LoadProgress } from "./device/load.ts";
export { DeviceTensors, type CudaTensor, type DeviceTensor, type HostTensor } from "./device/tensors.ts";
export { parseDevice, type DeviceSpec } from "./device/spec.ts";
// Tensor parallelism
export { planSplit, VOCAB_PADDING, type CustomPlan, type ModelConfig, type RankOf, type Split, type SplitRule, type TensorParallelPlan } from "./device/tp-plan.ts";
export { launchRank, type LaunchRank } from "./device/ranks.ts";
export type { RankLoadOptions } from "./device/rank-load.ts";
export { releasePinnedRings } from "./device/ring-cache.ts";
// PyTorch checkpoints
export { convert, type ConvertOptions, type ConvertResult } from "./convert/convert.ts";
export { describeLeaf, isPytorch, openPytorchLayout, type PickleLayout } from "./pickle/layout.ts";
