/**
 * Real HTTP servers on loopback for the remote tests: nginx (Debian's nginx-light) serving a folder with Range,
 * ETags and a request id; and a small fault-injecting proxy in front of it (test support, not the thing under test).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FIXTURES } from "./fixtures.ts";

/** Where nginx is, or undefined (the remote tests then skip, saying so). */
export const NGINX = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => spawnSync(p, ["-v"]).status === 0);

export interface Nginx {
  /** `http://127.0.0.1:PORT`: `/fixtures/…` is ../shared/fixtures, `/scratch/…` the writable folder `scratch`. */
  url: string;
  port: number;
  /** `https://127.0.0.1:TLS_PORT`, the same folders over TLS, where `tls` was given. */
  httpsUrl?: string;
  scratch: string;
  stop(): Promise<void>;
}

export interface NginxOptions {
  /** Also listen with TLS, presenting this certificate (PEM files, as `selfSigned()` in tls.ts makes). */
  tls?: { cert: string; key: string };
  /** More nginx directives for the server block (`limit_rate 80m;`, locations); `root` is the served folder. */
  extra?: (root: string) => string;
}

/**
 * Starts nginx in the foreground on a free loopback port, with its config, logs and temp files in a fresh folder.
 *
 * @example
 * ```ts
 * const nginx = await startNginx();
 * await fetch(`${nginx.url}/fixtures/safetensors/tiny-gpt2.safetensors`);
 * await nginx.stop();
 * ```
 */
export async function startNginx(opts: NginxOptions = {}): Promise<Nginx> {
  if (!NGINX) throw new Error("nginx is not installed (apt-get install -y nginx-light)");
  const dir = mkdtempSync(join(tmpdir(), "tensormap-nginx-"));
  const root = join(dir, "root");
  const scratch = join(root, "scratch");
  mkdirSync(scratch, { recursive: true });
  symlinkSync(FIXTURES, join(root, "fixtures"));
  const port = await freePort();
  const tlsPort = opts.tls ? await freePort() : undefined;
  const tls = opts.tls ? `listen 127.0.0.1:${tlsPort} ssl; ssl_certificate ${opts.tls.cert}; ssl_certificate_key ${opts.tls.key};` : "";
  const conf = join(dir, "nginx.conf");
  writeFileSync(
    conf,
    `daemon off; master_process off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    ${tls}
    root ${root};
    ${opts.extra?.(root) ?? ""}
    add_header X-Request-Id $request_id always;
    # A redirect to another origin (localhost, not 127.0.0.1), where a request carrying Authorization is refused:
    # what a model hub's redirect to its CDN looks like.
    location /moved/ {
      rewrite ^/moved/(.*)$ http://localhost:${port}/cdn/$1 redirect;
    }
    # A model hub (DESIGN §7): the index at main names its commit; files resolve at that commit only, with the
    # token, and redirect to the CDN.
    location = /o/r/resolve/main/model.safetensors.index.json {
      if ($http_authorization != "Bearer hf_test") { return 401; }
      add_header X-Repo-Commit 0123abcd0123abcd always;
      alias ${root}/fixtures/sharded/model.safetensors.index.json;
    }
    location /o/r/resolve/0123abcd0123abcd/ {
      if ($http_authorization != "Bearer hf_test") { return 401; }
      rewrite ^/o/r/resolve/[^/]+/(.*)$ http://localhost:${port}/cdn/fixtures/sharded/$1 redirect;
    }
    # An S3-style bucket "s3b" (path-style, as at AWS_ENDPOINT_URL_S3): requests without a SigV4 header of the
    # test's credentials and region are refused. The signature itself is checked against AWS's example in
    # helpers.test.ts: nginx cannot.
    location /s3b/ {
      if ($http_authorization !~ "^AWS4-HMAC-SHA256 Credential=AKIDTEST/[0-9]{8}/eu-west-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=[0-9a-f]{64}$") { return 403; }
      if ($http_x_amz_security_token != "tok") { return 403; }
      alias ${root}/fixtures/;
    }
    location /cdn/ {
      if ($http_authorization) { return 400; }
      alias ${root}/;
    }
  }
}
`,
  );
  const child = spawn(NGINX, ["-p", dir, "-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  await waitForPort(port, child, () => stderr);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    httpsUrl: opts.tls ? `https://127.0.0.1:${tlsPort}` : undefined,
    scratch,
    async stop() {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What the proxy does to requests whose path starts with `/FAULT/`: the rest of the path goes to nginx. */
export type Fault =
  /** None: passed through, and counted. */
  | "none"
  /** The first answer for each path is cut off halfway through its body (the socket destroyed). */
  | "reset"
  /** The first request for each path gets 503 with `Retry-After: 1`. */
  | "503"
  /** Range is dropped on the way: nginx answers 200 with the whole object. */
  | "norange"
  /** The first request for each path waits 30 s before any byte (the client's timeout is the test's). */
  | "slow"
  /** The first answer for each path sends its headers, then a byte every 50 ms. */
  | "trickle"
  /** Every request gets 503, without `Retry-After`. */
  | "down"
  /** Every request gets 403, with an `x-amz-request-id`. */
  | "403";

export interface FaultProxy {
  url: string;
  /** Requests seen, by fault and path. */
  requests: Map<string, number>;
  /** Body bytes sent downstream, by fault and path. */
  sent: Map<string, number>;
  /** The most requests open at once since the last `resetPeak()`. */
  readonly peak: number;
  resetPeak(): void;
  stop(): Promise<void>;
}

/**
 * A proxy to `upstream` (`http://127.0.0.1:PORT`) injecting the fault named by the first path segment.
 *
 * @example
 * ```ts
 * const proxy = await startFaultProxy(nginx.url);
 * await openCheckpoint(`${proxy.url}/reset/fixtures/safetensors/tiny-gpt2.safetensors`);
 * ```
 */
export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const requests = new Map<string, number>();
  const sent = new Map<string, number>();
  const sockets = new Set<Socket>();
  const timers = new Set<ReturnType<typeof setTimeout>>();
  let open = 0;
  let peak = 0;
  const server: Server = createServer((req, res) => {
    peak = Math.max(peak, ++open);
    res.on("close", () => open--);
    const [, fault, ...rest] = (req.url ?? "/").split("/");
    const key = `${fault} /${rest.join("/")}`;
    const seen = requests.get(key) ?? 0;
    requests.set(key, seen + 1);
    const forward = () => proxyTo(upstream, `/${rest.join("/")}`, req, res, fault as Fault, seen === 0, (n) => sent.set(key, (sent.get(key) ?? 0) + n), timers);
    if (fault === "503" && seen === 0) {
      res.writeHead(503, { "retry-after": "1", "content-length": "0" }).end();
    } else if (fault === "down") {
      res.writeHead(503, { "content-length": "0" }).end();
    } else if (fault === "403") {
      res.writeHead(403, { "x-amz-request-id": "REQ403", "content-length": "0" }).end();
    } else if (fault === "slow" && seen === 0) {
      const t = setTimeout(forward, 30_000);
      timers.add(t);
    } else forward();
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    sent,
    get peak() {
      return peak;
    },
    resetPeak: () => void (peak = open),
    async stop() {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function proxyTo(
  upstream: string,
  path: string,
  req: IncomingMessage,
  res: ServerResponse,
  fault: Fault,
  first: boolean,
  count: (n: number) => void,
  timers: Set<ReturnType<typeof setTimeout>>,
): void {
  const headers = { ...req.headers };
  if (fault === "norange") delete headers.range;
  const up = request(`${upstream}${path}`, { method: req.method, headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    const length = Number(answer.headers["content-length"] ?? 0);
    let passed = 0;
    if (fault === "trickle" && first) {
      const bytes: Buffer[] = [];
      answer.on("data", (chunk: Buffer) => bytes.push(chunk));
      answer.on("end", () => {
        const body = Buffer.concat(bytes);
        const drip = (at: number) => {
          if (at >= body.length || res.destroyed) return res.end();
          res.write(body.subarray(at, at + 1));
          timers.add(setTimeout(() => drip(at + 1), 50));
        };
        drip(0);
      });
      return;
    }
    answer.on("data", (chunk: Buffer) => {
      if (fault === "reset" && first && passed + chunk.length > length / 2) {
        res.write(chunk.subarray(0, Math.max(0, Math.floor(length / 2) - passed)));
        answer.destroy();
        res.socket?.destroy();
        return;
      }
      passed += chunk.length;
      count(chunk.length);
      if (!res.write(chunk)) {
        answer.pause();
        res.once("drain", () => answer.resume());
      }
    });
    answer.on("end", () => res.end());
  });
  up.on("error", () => res.socket?.destroy());
  res.on("close", () => up.destroy());
  req.pipe(up);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}): ${stderr()}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1", () => (s.destroy(), resolve(true)));
      s.on("error", () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill("SIGKILL");
  throw new Error(`nginx did not listen on ${port} within 5 s: ${stderr()}`);
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}
