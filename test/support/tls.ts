/**
 * Self-signed certificates for the HTTPS tests, made with `openssl` at test setup: valid for 127.0.0.1 and
 * localhost, for one day, in a fresh folder.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Where openssl is, or undefined (the HTTPS tests then skip, saying so). */
export const OPENSSL = ["/usr/bin/openssl", "/usr/local/bin/openssl"].find((p) => spawnSync(p, ["version"]).status === 0);

export interface SelfSigned {
  /** The certificate (PEM): what a client must trust, and what the server presents. */
  cert: string;
  /** Its private key (PEM). */
  key: string;
  remove(): void;
}

/**
 * A new self-signed certificate and key for `127.0.0.1` and `localhost`.
 *
 * @example
 * ```ts
 * const tls = selfSigned();
 * const nginx = await startNginx({ tls }); // then NODE_EXTRA_CA_CERTS=tls.cert (Node, Bun) or DENO_CERT=tls.cert
 * tls.remove();
 * ```
 */
export function selfSigned(): SelfSigned {
  if (!OPENSSL) throw new Error("openssl is not installed (apt-get install -y openssl)");
  const dir = mkdtempSync(join(tmpdir(), "tensormap-tls-"));
  const [cert, key] = [join(dir, "cert.pem"), join(dir, "key.pem")];
  const args = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"];
  args.push("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth", "-keyout", key, "-out", cert);
  const r = spawnSync(OPENSSL, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr}`);
  return { cert, key, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
