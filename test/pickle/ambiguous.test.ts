/**
 * Files that two readers can read two ways. Each one here, checked against torch 2.13 when written, loads a
 * different pickle (or other data) under torch.load than the one a naive reader vets: tensormap must refuse
 * them rather than say "ok" for bytes torch never reads.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { open } from "../../src/checkpoint/open.ts";
import { isPytorch, openPytorchLayout } from "../../src/pickle/layout.ts";
import { readZip } from "../../src/pickle/zip.ts";
import { concat } from "../support/bytes.ts";
import { Pickle, legacyFile, memorySource, outcome, shiftZip, statePickle, storedZip, tarHeader, torchZip, type ZipFile } from "./build.ts";

const enc = new TextEncoder();
/** Runs a command under plain pickle (and so under torch.load with weights_only=False). */
const evil = new Pickle().proto().global("posix", "system").mark().str("touch pwned").tuple().reduce().stop().bytes();
const benign = statePickle([{ name: "w", storage: "FloatStorage", key: "0", numel: 2, shape: [2] }]);
const storage = new Uint8Array(new Float32Array([1, 2]).buffer);
const version = enc.encode("3\n");

const layoutOf = (bytes: Uint8Array) => outcome(() => openPytorchLayout(memorySource(bytes)));

describe("zip archives", () => {
  test("an entry named twice is refused, wherever the evil copy sits", () => {
    // torch's reader finds a name by binary search, so which copy it loads depends on the directory's order:
    // with three copies at the front it took the first, behind two other entries the middle one.
    for (const at of [0, 1, 2]) {
      const copies = [0, 1, 2].map((i): [string, Uint8Array] => ["archive/data.pkl", i === at ? evil : benign]);
      expect(layoutOf(storedZip([...copies, ["archive/data/0", storage], ["archive/version", version]]))).toMatch(/^InvalidZip: zip lists archive\/data.pkl twice/);
      expect(layoutOf(storedZip([["archive/version", version], ["archive/data/0", storage], ...copies]))).toMatch(/^InvalidZip: zip lists archive\/data.pkl twice/);
    }
    // A storage named twice: torch served the second copy's values.
    const twice = storedZip([["archive/data.pkl", benign], ["archive/data/0", storage], ["archive/data/0", new Uint8Array(8)], ["archive/version", version]]);
    expect(layoutOf(twice)).toMatch(/^InvalidZip: zip lists archive\/data\/0 twice/);
  });

  test("names that differ only in ASCII case are one name to torch's reader, and are refused", () => {
    // torch loaded DATA.PKL for data.pkl.
    const zip = storedZip([["archive/data.pkl", benign], ["archive/DATA.PKL", evil], ["archive/data/0", storage], ["archive/version", version]]);
    expect(layoutOf(zip)).toBe("InvalidZip: zip lists both archive/data.pkl and archive/DATA.PKL, one name to torch's reader: readers disagree on which entry it means");
    // Names that differ outside ASCII letters stay distinct.
    const distinct = storedZip([["archive/data.pkl", benign], ["archive/data/0", storage], ["archive/data/É", storage], ["archive/data/é", storage], ["archive/version", version]]);
    expect(layoutOf(distinct)).toBe("ok");
  });

  test("a local header that names its entry differently is refused", () => {
    const zip = storedZip([{ name: "archive/data.pkl", data: benign, localName: "archive/data.pkz" }, ["archive/data/0", storage], ["archive/version", version]]);
    expect(outcome(() => readZip(memorySource(zip)))).toBe("InvalidZip: zip local header of archive/data.pkl gives it another name");
  });

  test("entries that overlap each other or the central directory are refused", () => {
    const files: ZipFile[] = [{ name: "archive/data.pkl", data: benign }, { name: "archive/data/0", data: storage }];
    // Two central entries over one local header: the names cannot both match it.
    expect(outcome(() => readZip(memorySource(storedZip([...files, { name: "archive/data/1", data: benign, sameAs: 0 }]))))).toBe("InvalidZip: zip local header of archive/data/1 gives it another name");
    // An entry whose declared size takes in the next entry's local header and data.
    const swallow = storedZip([{ name: "archive/data.pkl", data: benign, size: benign.length + 30 + 14 + storage.length }, files[1]!]);
    expect(outcome(() => readZip(memorySource(swallow)))).toBe("InvalidZip: zip entry archive/data.pkl and entry archive/data/0 overlap");
    // The last entry's data running on into the central directory.
    const intoDirectory = storedZip([files[0]!, { ...files[1]!, size: storage.length + 46 }]);
    expect(outcome(() => readZip(memorySource(intoDirectory)))).toBe("InvalidZip: zip entry archive/data/0 and central directory overlap");
  });

  test("only the end record nearest the end counts, and it must account for every byte after it", () => {
    // A benign archive whose comment hides an evil archive and a second end record: torch's reader takes the
    // last end record (and ran the evil pickle), an earlier-first reader the benign one.
    const good = storedZip([["archive/data.pkl", benign], ["archive/data/0", storage], ["archive/version", version]]);
    const bad = shiftZip(storedZip([["archive/data.pkl", evil], ["archive/data/0", storage], ["archive/version", version]]), good.length);
    const file = concat(good, bad, Uint8Array.of(0));
    new DataView(file.buffer).setUint16(good.length - 2, bad.length + 1, true);
    expect(layoutOf(file)).toBe("InvalidZip: zip end record's comment length does not match the bytes after it: readers would disagree on which end record counts");
    // With no byte after it, the last end record is the one torch reads, and so the one vetted: refused.
    const last = concat(good, bad);
    new DataView(last.buffer).setUint16(good.length - 2, bad.length, true);
    expect(layoutOf(last)).toBe("UnsafePickle: refused global posix.system");
  });

  test("a ZIP64 end record wins over the classic one, and the two must agree", () => {
    const files: Array<[string, Uint8Array]> = [["archive/data.pkl", benign], ["archive/data/0", storage], ["archive/version", version]];
    const zip = storedZip(files, { zip64: true });
    const view = new DataView(zip.buffer);
    const eocd = zip.length - 22;
    const record = eocd - 20 - 56;
    // Classic fields that say what the ZIP64 record says (rather than 0xffff…): still one reading.
    view.setUint16(eocd + 8, 3, true);
    view.setUint16(eocd + 10, 3, true);
    view.setUint32(eocd + 12, Number(view.getBigUint64(record + 40, true)), true);
    view.setUint32(eocd + 16, Number(view.getBigUint64(record + 48, true)), true);
    expect(layoutOf(zip)).toBe("ok");
    // Classic fields that list fewer entries: torch's reader follows the ZIP64 record regardless.
    view.setUint16(eocd + 10, 2, true);
    expect(layoutOf(zip)).toBe("InvalidZip: zip's classic and ZIP64 end records describe different central directories");
  });

  test("the archive's root is its first entry's folder, and nothing lies outside it", () => {
    // torch takes a/ from the first entry and refuses b/ (torch.load lists every record); a reader that took
    // the first data.pkl it met would vet b/data.pkl and not the a/data.pkl torch would load.
    const twoRoots = storedZip([["a/version", version], ["b/data.pkl", benign], ["b/data/0", storage], ["a/data.pkl", evil]]);
    expect(layoutOf(twoRoots)).toMatch(/^InvalidZip: memory.pt has b\/data.pkl outside its root folder a\//);
    expect(layoutOf(storedZip([["version", version], ["archive/data.pkl", benign], ["archive/data/0", storage]]))).toBe("InvalidZip: memory.pt: zip entry version is not in a folder: not a torch.save archive");
    expect(layoutOf(torchZip(benign, { "0": storage }, "any-name"))).toBe("ok");
  });

  test("a TorchScript archive is refused: torch.load hands it to torch.jit.load", () => {
    const script = torchZip(benign, { "0": storage });
    const withConstants = storedZip([["archive/data.pkl", benign], ["archive/constants.pkl", new Pickle().proto().emptyTuple().stop().bytes()], ["archive/data/0", storage]]);
    expect(layoutOf(script)).toBe("ok");
    expect(layoutOf(withConstants)).toBe("UnsafePickle: refused memory.pt: a TorchScript archive (it has archive/constants.pkl), which torch.load runs as TorchScript");
  });

  test("a file that starts with a zip local header is a zip, as torch.load decides, whatever its first u64", async () => {
    // Version needed 0 and flags 0 make the first u64 0x04034b50, a valid safetensors header length: such a
    // file can be a safetensors file and, from its central directory at the end, a torch archive too.
    const zip = torchZip(statePickle([{ name: "w", storage: "FloatStorage", key: "0", numel: 2, shape: [2] }]), { "0": storage });
    zip.fill(0, 4, 8);
    expect(new DataView(zip.buffer).getBigUint64(0, true)).toBe(0x04034b50n);
    expect(isPytorch(zip.subarray(0, 8))).toBe(true);
    const dir = mkdtempSync(path.join(tmpdir(), "tensormap-ambiguous-"));
    try {
      writeFileSync(path.join(dir, "model.bin"), zip);
      using f = await open(path.join(dir, "model.bin"));
      expect(f.keys()).toEqual(["w"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("legacy streams", () => {
  /**
   * A legacy stream whose first 512 bytes are also a tar header: the header's name field holds the first
   * pickles and a BINSTRING opcode whose string is the rest of the header. torch.load tries the tar format
   * first, and (given a `storages` member) unpickles that instead.
   */
  function tarPolyglot(): Uint8Array {
    const rest = legacyFile(benign, [["0", 2, storage]]);
    // legacyFile's first three pickles, rebuilt to end in a BINSTRING that swallows the tar header.
    const magic = rest.subarray(0, 15);
    const protocol = Uint8Array.of(0x80, 2, 0x4d, 0xe9, 0x03, 0x2e);
    const name = concat(magic, protocol, Uint8Array.of(0x80, 2, 0x54, 0xe4, 0x01)); // BINSTRING of 0x1e4 = 484 bytes: to byte 512
    const tail = rest.subarray(15 + 6 + 24); // after legacyFile's own 24-byte sys_info pickle
    const body = concat(Uint8Array.of(0x30, 0x7d, 0x2e), tail); // POP the string; sys_info = {}
    return concat(tarHeader(name, body.length), body, new Uint8Array(1024 + 512 - (body.length % 512)));
  }

  test("a stream that is also a tar archive is refused", () => {
    const file = tarPolyglot();
    // Without the tar check it reads as a fine legacy checkpoint.
    expect(layoutOf(file.slice().fill(0x20, 148, 156))).toBe("ok");
    expect(layoutOf(file)).toBe("UnsafePickle: refused memory.pt: it is also a tar archive, which torch.load reads instead of its pickles");
  });
});
