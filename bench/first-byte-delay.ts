/**
 * Object storage in front of nginx on loopback: a TCP proxy that holds every chunk a client sends (an HTTP
 * request) for a fixed time before passing it on (first-byte latency), and paces each connection's answers to a
 * fixed rate (S3's per-connection throughput). The pacing is here, not nginx's `limit_rate`: nginx lets each
 * request send a second's worth at full speed before it throttles (an 8 MiB part is never slowed). Run by
 * bench/remote.ts as a process of its own, so that its copying does not share the benchmarked process's thread.
 *
 *   bun bench/first-byte-delay.ts UPSTREAM_PORT DELAY_MS BYTES_PER_S   # 0: unpaced; prints {"port": N}
 */
import { connect, createServer, type Socket } from "node:net";

const [upstreamPort, delayMs, bytesPerSecond] = process.argv.slice(2).map(Number) as [number, number, number];

const server = createServer((client: Socket) => {
  const upstream = connect(upstreamPort, "127.0.0.1");
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  // Chunks keep their order: each leaves `delayMs` after it came, and they came in order.
  client.on("data", (chunk) => void setTimeout(() => upstream.write(chunk), delayMs));
  client.on("end", () => setTimeout(() => upstream.end(), delayMs));
  // When the bytes sent so far are due at the paced rate: the connection idles while ahead of it.
  let due = 0;
  let holds = 0;
  const release = () => void (--holds === 0 && upstream.resume());
  upstream.on("data", (chunk: Buffer) => {
    const now = performance.now();
    if (!client.write(chunk)) (holds++, client.once("drain", release));
    if (bytesPerSecond > 0) {
      due = Math.max(due, now) + (chunk.byteLength / bytesPerSecond) * 1000;
      if (due - now >= 1) (holds++, setTimeout(release, due - now));
    }
    if (holds > 0) upstream.pause();
  });
  upstream.on("end", () => client.end());
  const close = () => (client.destroy(), upstream.destroy());
  client.on("error", close);
  upstream.on("error", close);
  client.on("close", close);
  upstream.on("close", close);
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof address === "object" && address ? address.port : 0 })}\n`);
});
