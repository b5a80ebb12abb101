// What the splice handle needs from an engine. Two exist: 'native' (the C++ pumps on native I/O
// threads) and 'js' (a stream pump over the TLSSocket, the fallback). What each must do with the
// user's fds, the end flags, stop and truncation is docs/ENGINE-CONTRACT.md;
// test/engine-conformance.test.mjs runs it against both.

export type EngineName = 'native' | 'js';

export interface SpliceStats {
  bytesIn: number;        // cleartext written to the target (TLS -> fd)
  bytesOut: number;       // cleartext sent to the peer (fd -> TLS)
  recordsIn: number;      // TLS records opened (native engine only)
  recordsOut: number;     // TLS records sealed (native engine only)
  keyUpdatesIn: number;   // TLS 1.3 KeyUpdates followed (native engine only)
  keyUpdatesOut: number;  // TLS 1.3 KeyUpdates sent (native engine only)
  ticketsIn: number;      // TLS 1.3 NewSessionTickets skipped (native engine only)
  packetsIn: number;      // packets written to the target (packet framing)
  packetsDropped: number; // packets the target refused with EIO, e.g. a TUN device that is down
  packetsOut: number;     // packets read from the target and sent (packet framing)
  ciphertextIn: number;   // bytes read from TCP (native engine only)
  ciphertextOut: number;  // bytes written to TCP (native engine only)
}

// 'idle': an inactivity limit (idleTimeout / finTimeout) ended the splice.
export type EndReason = 'end' | 'stopped' | 'aborted' | 'error' | 'idle';

export interface EngineEndInfo {
  reason: EndReason;
  code?: string;
  detail?: string;
  errno?: number;
  alertSent?: string;
  alertReceived?: string;
  closeNotifyReceived: boolean;        // proved, never guessed
  closeNotifySent: boolean;
  peerEofWithoutCloseNotify: boolean;  // a TCP end with no close_notify, or one the engine cannot classify
  undeliveredIn: number;
  unreadCiphertext: number;
  undeliveredOut: number;
  ignoredAfterClose: number;
  cause?: unknown;
}

export interface EngineEvents {
  // The peer closed its side and everything it sent before reached the target.
  onEnd(): void;
  // The engine is finished; called once, after every fd the engine owned is closed.
  onClose(info: EngineEndInfo, stats: SpliceStats): void;
}

export interface Engine {
  readonly name: EngineName;
  stop(graceful: boolean): void;
  stats(): SpliceStats;
  ref(): void;
  unref(): void;
}

export function emptyStats(): SpliceStats {
  return {
    bytesIn: 0, bytesOut: 0, recordsIn: 0, recordsOut: 0, keyUpdatesIn: 0, keyUpdatesOut: 0,
    ticketsIn: 0, packetsIn: 0, packetsDropped: 0, packetsOut: 0, ciphertextIn: 0,
    ciphertextOut: 0,
  };
}

export function endInfo(reason: EngineEndInfo['reason'],
  extra: Partial<EngineEndInfo> = {}): EngineEndInfo {
  return {
    reason, closeNotifyReceived: false, closeNotifySent: false, peerEofWithoutCloseNotify: false,
    undeliveredIn: 0, unreadCiphertext: 0, undeliveredOut: 0, ignoredAfterClose: 0, ...extra,
  };
}
