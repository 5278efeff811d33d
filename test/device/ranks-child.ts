/**
 * One rank of a launch (test/device/ranks-launch.test.ts): loads its parts with rank and world size left to the
 * launcher's environment and prints one JSON line: the rank it found and a sha256 per tensor part.
 *
 *   OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=4 bun test/device/ranks-child.ts PATH llama
 */
import { createHash } from "node:crypto";
import { launchRank, loadToDevice, type TensorParallelPlan } from "../../src/index.ts";

const [path, plan] = process.argv.slice(2) as [string, TensorParallelPlan];
using w = await loadToDevice(path, { device: "cpu", plan });
const parts = Object.fromEntries([...w.keys()].map((name) => [name, createHash("sha256").update(w.toHost(name)).digest("hex")]));
console.log(JSON.stringify({ rank: launchRank(), parts }));
