/**
 * Which rank this process is, as its launcher says: torchrun, Open MPI, MPICH/PMI or Slurm set environment
 * variables in every process they start.
 */
import { readEnv } from "../../ffi/runtime.ts";
import { SafetensorsError } from "../errors.ts";

/** This process's place in a launch: global rank, world size, and rank on this machine (its GPU index). */
export interface LaunchRank {
  rank: number;
  worldSize: number;
  localRank: number;
  /** The launcher the variables came from, or `"none"` (a single process: rank 0 of 1). */
  launcher: "torchrun" | "openmpi" | "pmi" | "slurm" | "none";
}

/** Each launcher's variables: rank, world size, local rank (MPICH's PMI has none: the rank stands in). */
const LAUNCHERS = [
  ["torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"],
  ["openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"],
  ["pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"],
  ["slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"],
] as const;

/**
 * This process's rank from the launcher's environment (the first launcher whose rank and world size are both
 * set, in the order torchrun, Open MPI, PMI, Slurm); rank 0 of 1 when none is. By default the process's own
 * variables, those Deno lets it read (only these are asked for, so no permission prompt). A value that is not a
 * non-negative integer, or a rank outside the world, is `InvalidArgument` naming the variable.
 *
 * @example
 * ```ts
 * import { launchRank } from "tensormap";
 * launchRank({ RANK: "3", WORLD_SIZE: "8", LOCAL_RANK: "3" }); // { rank: 3, worldSize: 8, localRank: 3, launcher: "torchrun" }
 * console.log(launchRank()); // under mpirun -np 4, from OMPI_COMM_WORLD_*; alone: rank 0 of 1
 * ```
 */
export function launchRank(env: Record<string, string | undefined> = launchEnv()): LaunchRank {
  for (const [launcher, rankVar, sizeVar, localVar] of LAUNCHERS) {
    if (env[rankVar] === undefined || env[sizeVar] === undefined) continue;
    const rank = integer(env, rankVar);
    const worldSize = integer(env, sizeVar);
    const localRank = env[localVar] === undefined ? rank : integer(env, localVar);
    if (worldSize < 1 || rank >= worldSize) {
      throw new SafetensorsError("InvalidArgument", `${rankVar}=${rank} is not a rank of ${sizeVar}=${worldSize}`);
    }
    return { rank, worldSize, localRank, launcher };
  }
  return { rank: 0, worldSize: 1, localRank: 0, launcher: "none" };
}

function integer(env: Record<string, string | undefined>, name: string): number {
  const text = env[name]!;
  if (!/^(0|[1-9][0-9]{0,8})$/.test(text.trim())) throw new SafetensorsError("InvalidArgument", `${name}=${JSON.stringify(text)} is not a non-negative integer`);
  return Number(text.trim());
}

function launchEnv(): Record<string, string | undefined> {
  return Object.fromEntries(LAUNCHERS.flatMap(([, ...names]) => names.map((n) => [n, readEnv(n)])));
}
