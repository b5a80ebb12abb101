// Prometheus metrics for the commands (prom-client): connections total, active and refused
// (--max-connections), handshake failures, bytes each way, splice ends by reason and code, splices
// by engine. Served as text on GET /metrics. With --workers, each worker keeps its own registry
// and the primary serves their sum (prom-client's AggregatorRegistry over node:cluster IPC).
import * as http from 'node:http';

import type { SpliceEnd } from '../index';
import { Addr, Logger, listen } from './common';

// node:cluster is `export default` in @types/node but module.exports at run time.
const cluster = require('node:cluster') as import('node:cluster').Cluster;

type PromClient = typeof import('prom-client');

function promClient(): PromClient {
  return require('prom-client') as PromClient;
}

export class Metrics {
  readonly registry: import('prom-client').Registry;
  readonly #connections: import('prom-client').Counter;
  readonly #active: import('prom-client').Gauge;
  readonly #refused: import('prom-client').Counter;
  readonly #handshakeFailures: import('prom-client').Counter;
  readonly #handshakes: import('prom-client').Counter;
  readonly #bytes: import('prom-client').Counter;
  readonly #ends: import('prom-client').Counter;
  readonly #engines: import('prom-client').Counter;

  constructor(readonly command: string) {
    const client = promClient();
    this.registry = new client.Registry();
    const registers = [this.registry];
    const labels = { command };
    this.registry.setDefaultLabels(labels);
    this.#connections = new client.Counter({ name: 'tls_splice_connections_total',
      help: 'TCP connections accepted', registers });
    this.#active = new client.Gauge({ name: 'tls_splice_connections_active',
      help: 'Connections open now (handshaking, dialing or spliced)', registers });
    this.#refused = new client.Counter({ name: 'tls_splice_connections_refused_total',
      help: 'TCP connections closed at once because --max-connections were open', registers });
    this.#handshakeFailures = new client.Counter({ name: 'tls_splice_handshake_failures_total',
      help: 'TLS handshakes that failed, by error code', labelNames: ['code'], registers });
    this.#handshakes = new client.Counter({ name: 'tls_splice_handshakes_total',
      help: 'TLS handshakes completed, by whether they resumed a session (ticket or PSK)',
      labelNames: ['resumed'], registers });
    this.#bytes = new client.Counter({ name: 'tls_splice_bytes_total',
      help: 'Cleartext bytes carried by ended splices: from_client (to the backend) and ' +
        'to_client', labelNames: ['direction'], registers });
    this.#ends = new client.Counter({ name: 'tls_splice_splice_ends_total',
      help: 'Splices ended, by reason (end, stopped, aborted, error) and error code',
      labelNames: ['reason', 'code'], registers });
    this.#engines = new client.Counter({ name: 'tls_splice_splices_total',
      help: 'Splices started, by engine (native or js)', labelNames: ['engine'], registers });
    if (cluster.isWorker) {
      // prom-client answers the primary's requests only once an AggregatorRegistry exists.
      void new client.AggregatorRegistry();
      client.AggregatorRegistry.setRegistries([this.registry]);
    }
  }

  connectionOpened(): void {
    this.#connections.inc();
    this.#active.inc();
  }

  connectionClosed(): void {
    this.#active.dec();
  }

  connectionRefused(): void {
    this.#refused.inc();
  }

  handshakeFailed(code: string | undefined): void {
    this.#handshakeFailures.inc({ code: code ?? 'unknown' });
  }

  handshakeDone(resumed: boolean): void {
    this.#handshakes.inc({ resumed: String(resumed) });
  }

  spliceStarted(engine: 'native' | 'js' | null): void {
    this.#engines.inc({ engine: engine ?? 'none' });
  }

  spliceEnded(end: SpliceEnd): void {
    this.#bytes.inc({ direction: 'from_client' }, end.stats.bytesIn);
    this.#bytes.inc({ direction: 'to_client' }, end.stats.bytesOut);
    this.#ends.inc({ reason: end.reason, code: end.error?.code ?? '' });
  }
}

/**
 * Serves GET /metrics on addr: `source` gives the text and its content type. Resolves with the
 * HTTP server and its bound address.
 */
export async function serveMetrics(addr: Addr, logger: Logger,
  source: () => Promise<{ text: string; contentType: string }>):
  Promise<{ server: http.Server; addr: Addr }> {
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('GET /metrics\n');
      return;
    }
    source().then(({ text, contentType }) => {
      res.writeHead(200, { 'content-type': contentType }).end(text);
    }, (err) => {
      logger.error('metrics: collecting failed', err);
      res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`);
    });
  });
  const bound = await listen(server, addr, '--metrics');
  return { server, addr: bound };
}

/** The source for one process's registry. */
export function registrySource(metrics: Metrics):
  () => Promise<{ text: string; contentType: string }> {
  return async () => ({ text: await metrics.registry.metrics(),
    contentType: metrics.registry.contentType });
}

/** The source for the sum over cluster workers (call in the primary). */
export function clusterSource(): () => Promise<{ text: string; contentType: string }> {
  const client = promClient();
  const aggregator = new client.AggregatorRegistry();
  return async () => ({ text: await aggregator.clusterMetrics(),
    contentType: aggregator.contentType });
}
