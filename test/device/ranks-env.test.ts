import { describe, expect, test } from "vitest";
import { launchRank } from "../../src/device/ranks.ts";

describe("launchRank", () => {
  test("each launcher's variables", () => {
    expect(launchRank({ RANK: "5", WORLD_SIZE: "8", LOCAL_RANK: "1", LOCAL_WORLD_SIZE: "4" })).toEqual({ rank: 5, worldSize: 8, localRank: 1, launcher: "torchrun" });
    expect(launchRank({ OMPI_COMM_WORLD_RANK: "3", OMPI_COMM_WORLD_SIZE: "4", OMPI_COMM_WORLD_LOCAL_RANK: "3" })).toEqual({ rank: 3, worldSize: 4, localRank: 3, launcher: "openmpi" });
    expect(launchRank({ PMI_RANK: "2", PMI_SIZE: "4", MPI_LOCALRANKID: "0" })).toEqual({ rank: 2, worldSize: 4, localRank: 0, launcher: "pmi" });
    expect(launchRank({ SLURM_PROCID: "6", SLURM_NTASKS: "8", SLURM_LOCALID: "2" })).toEqual({ rank: 6, worldSize: 8, localRank: 2, launcher: "slurm" });
  });

  test("no local rank: the rank stands in; no launcher: rank 0 of 1", () => {
    expect(launchRank({ PMI_RANK: "1", PMI_SIZE: "2" })).toEqual({ rank: 1, worldSize: 2, localRank: 1, launcher: "pmi" });
    expect(launchRank({})).toEqual({ rank: 0, worldSize: 1, localRank: 0, launcher: "none" });
    // A rank without its world size is no launch (Slurm sets SLURM_PROCID for a lone step too, with SLURM_NTASKS).
    expect(launchRank({ RANK: "1" })).toEqual({ rank: 0, worldSize: 1, localRank: 0, launcher: "none" });
  });

  test("torchrun first: its variables win over the MPI or Slurm ones it runs under", () => {
    expect(launchRank({ SLURM_PROCID: "0", SLURM_NTASKS: "1", RANK: "2", WORLD_SIZE: "4", LOCAL_RANK: "2" }).launcher).toBe("torchrun");
    expect(launchRank({ SLURM_PROCID: "0", SLURM_NTASKS: "2", OMPI_COMM_WORLD_RANK: "1", OMPI_COMM_WORLD_SIZE: "2" }).launcher).toBe("openmpi");
  });

  test("bad values are InvalidArgument naming the variable", () => {
    const cases: Array<[Record<string, string>, string]> = [
      [{ RANK: "x", WORLD_SIZE: "2" }, 'RANK="x" is not a non-negative integer'],
      [{ RANK: "-1", WORLD_SIZE: "2" }, 'RANK="-1" is not a non-negative integer'],
      [{ RANK: "2", WORLD_SIZE: "2" }, "RANK=2 is not a rank of WORLD_SIZE=2"],
      [{ OMPI_COMM_WORLD_RANK: "0", OMPI_COMM_WORLD_SIZE: "0" }, "OMPI_COMM_WORLD_RANK=0 is not a rank of OMPI_COMM_WORLD_SIZE=0"],
      [{ SLURM_PROCID: "0", SLURM_NTASKS: "2", SLURM_LOCALID: "1.5" }, 'SLURM_LOCALID="1.5" is not a non-negative integer'],
    ];
    for (const [env, message] of cases) expect(() => launchRank(env)).toThrow(expect.objectContaining({ code: "InvalidArgument", message }));
  });

  test("by default the process's own environment", () => {
    const saved = { ...process.env };
    try {
      for (const k of ["RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID", "SLURM_NTASKS"]) delete process.env[k];
      Object.assign(process.env, { OMPI_COMM_WORLD_RANK: "1", OMPI_COMM_WORLD_SIZE: "2", OMPI_COMM_WORLD_LOCAL_RANK: "1" });
      expect(launchRank()).toEqual({ rank: 1, worldSize: 2, localRank: 1, launcher: "openmpi" });
    } finally {
      for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
      Object.assign(process.env, saved);
    }
  });
});
