/**
 * Every failure tensormap reports on bad input, a bad environment or a failed system call is a
 * {@link SafetensorsError} with a stable `code`. Format codes are the reference reader's error names
 * (safetensors 0.8), so tools that match on them keep working.
 */

/** Stable error codes. Format codes mirror the reference; the rest are tensormap's own. */
export type ErrorCode =
  // safetensors format (the reference's names)
  | "HeaderTooSmall"
  | "HeaderTooLarge"
  | "InvalidHeaderLength"
  | "InvalidHeader"
  | "InvalidHeaderDeserialization"
  | "InvalidOffset"
  | "TensorInvalidInfo"
  | "ValidationOverflow"
  | "MisalignedSlice"
  | "MetadataIncompleteBuffer"
  // access
  | "TensorNotFound"
  | "SliceOutOfRange"
  | "TooManySlices"
  | "InvalidSlice"
  | "TensorTooLarge"
  | "Closed"
  | "FileChanged"
  | "NotAFile"
  | "FileTooLarge"
  // remote checkpoints (HTTP)
  | "RemoteError"
  | "NotFetched"
  // writing and arguments
  | "InvalidTensor"
  | "InvalidArgument"
  // sharded checkpoints
  | "InvalidIndex"
  | "MissingShard"
  | "UnevenSplit"
  // system calls
  | "IoError"
  | "FfiUnavailable"
  // devices
  | "CudaUnavailable"
  | "CudaError"
  // pickle checkpoints
  | "UnsafePickle"
  | "UnsupportedDtype"
  | "VerifyFailed"
  | "InvalidPickle"
  | "InvalidZip"
  | "PickleTooLarge"
  | "NoTensors"
  // a failed system call: the errno name (ENOENT, EACCES, ENOMEM, …)
  | ErrnoCode;

/** A libc errno name such as `ENOENT`: the code of a failed system call. */
export type ErrnoCode = `E${Uppercase<string>}`;

/**
 * The one error type tensormap throws for anything it can name.
 *
 * @example
 * ```ts
 * import { open, SafetensorsError } from "tensormap";
 * try {
 *   using file = await open("missing.safetensors");
 *   console.log(file.keys());
 * } catch (e) {
 *   if (e instanceof SafetensorsError && e.code === "ENOENT") console.error(e.message); // "cannot open missing.safetensors: …"
 * }
 * ```
 */
export class SafetensorsError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SafetensorsError";
    this.code = code;
  }
}

/** Turns a Node-style system error (`err.code === "ENOENT"`, …) into a {@link SafetensorsError}. */
export function fromSystemError(err: unknown, what: string): SafetensorsError {
  if (err instanceof SafetensorsError) return err;
  const e = err as { code?: unknown; message?: unknown };
  const code: ErrorCode = typeof e?.code === "string" && /^E[A-Z0-9]+$/.test(e.code) ? (e.code as ErrnoCode) : "IoError";
  // Node words it "ENOENT: no such file or directory, open 'x'": keep only the reason, the code and path are said already.
  const message = typeof e?.message === "string" ? e.message.split("\n")[0]! : String(err);
  const reason = message.replace(/^E[A-Z0-9]+: /, "").replace(/, \w+ '[^']*'$/, "");
  return new SafetensorsError(code, `${what}: ${reason}`, { cause: err });
}

/**
 * An error about one file of several (a shard), with that file named in its message when it was not yet;
 * anything but a {@link SafetensorsError} comes back as it is.
 *
 * @example
 * ```ts
 * try { openShard(path); } catch (e) { throw namingFile(e, "model-00002-of-00003.safetensors"); }
 * ```
 */
export function namingFile(err: unknown, file: string): unknown {
  if (!(err instanceof SafetensorsError) || err.message.includes(file)) return err;
  return new SafetensorsError(err.code, `${file}: ${err.message}`, { cause: err });
}
