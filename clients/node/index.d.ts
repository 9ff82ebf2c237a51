// Types of opd-client (index.js): opd's socket protocol v1 (docs/protocol.md).
/// <reference types="node" />

export declare const PROTO_VERSION: 1;
export declare const DEFAULT_SOCKET: string;
export declare const DEFAULT_MAX_FRAME: number;

export type ErrorCode =
  | "bad_request" | "frame_too_large" | "unknown_op" | "unknown_language" | "pool_exhausted"
  | "timeout" | "vm_failed" | "busy" | "shutting_down" | "permission_denied" | "internal_error"
  | "unavailable"
  | "connection_closed" | "protocol_error";

export declare class OpdError extends Error {
  static code: ErrorCode | null;
  static retryable: boolean;
  constructor(message: string, opts?: { code?: string | null; id?: Id | null; answer?: object | null });
  code: ErrorCode | string | null;
  retryable: boolean;
  id: Id | null;
  answer: Record<string, unknown> | null;
}
export declare class BadRequest extends OpdError {}
export declare class FrameTooLarge extends OpdError {}
export declare class UnknownOp extends OpdError {}
export declare class UnknownLanguage extends OpdError {}
export declare class PoolExhausted extends OpdError {}
export declare class GuestTimeout extends OpdError {}
export declare class VMFailed extends OpdError {}
export declare class Busy extends OpdError {}
export declare class ShuttingDown extends OpdError {}
export declare class PermissionDenied extends OpdError {}
export declare class InternalError extends OpdError {}
export declare class Unavailable extends OpdError {}
export declare class NotFound extends OpdError {}
export declare class QuotaExceeded extends OpdError {}
export declare class ConnectionClosed extends OpdError {}
export declare class ProtocolError extends OpdError {}
export declare function errorFromAnswer(answer: Record<string, any>): OpdError;

export type Id = string | number;

export declare function encodeFrame(obj: object): Buffer;
export declare class FrameReader {
  constructor(maxFrame?: number);
  feed(data: Uint8Array): void;
  next(): Record<string, any> | null;
}
export declare function getBytes(obj: Record<string, any>, key: string): Buffer;
export declare function orderOf(answer: Record<string, any>, outLen: number, errLen: number): Array<[1 | 2, number]> | null;
export declare function interleave(order: Array<[1 | 2, number]> | null, out: Buffer, err: Buffer): Buffer;

export interface FileEntry { name: string; content: string; encoding?: "utf8" | "base64" }
export declare function fileEntry(name: string, content: string | Uint8Array): FileEntry;

export interface ExecOptions {
  stdin?: string | Uint8Array;
  args?: Array<string | number>;
  env?: Record<string, string>;
  /** {name: text or bytes} or files[] entries */
  files?: Record<string, string | Uint8Array> | FileEntry[];
  /** seconds (timeout_ms) */
  timeout?: number;
  /** seconds (compile_timeout_ms), compiled languages only */
  compileTimeout?: number;
  cpuTimeMs?: number;
  memoryBytes?: number;
  maxProcesses?: number;
  outputMaxBytes?: number;
  fileSizeMaxBytes?: number;
  outputFiles?: string[];
  mode?: "auto" | "warm" | "cold";
  /**
   * session runs of a compiled language: "compile" (the compile step alone) or "run" (the
   * program an earlier compile built, code null); docs/protocol.md "Compile once, run many"
   */
  phase?: "all" | "compile" | "run";
  id?: Id;
  /** raw request fields, merged in as they are */
  extra?: Record<string, unknown>;
}
export interface StreamOptions extends ExecOptions { stdinStream?: boolean }

export declare function execRequest(lang: string, code: string | null | undefined,
  opts?: ExecOptions & { stream?: boolean; stdinStream?: boolean }): Record<string, any>;

export type RunStatus = "ok" | "runtime_error" | "signal" | "timeout" | "output_limit"
  | "memory_limit" | "compile_error" | "internal_error";

export declare class Result {
  constructor(answer: Record<string, any>);
  answer: Record<string, any>;
  id: Id | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
  stderrBytes: Buffer;
  /** [stream, nbytes] runs as the guest read them (1: stdout, 2: stderr); null when none */
  outputOrder: Array<[1 | 2, number]> | null;
  /** stdout and stderr interleaved in that order (stdout then stderr without one) */
  outputBytes: Buffer;
  output: string;
  exitCode: number | null;
  signal: number | null;
  timedOut: boolean;
  truncated: boolean;
  /** a repl session's run: its interpreter (and the session) ended */
  replEnded: boolean;
  status: RunStatus | null;
  usage: { cpu_time_ms: number; wall_ms: number; memory_peak_bytes: number } | null;
  timingsMs: { queue?: number; boot_or_resume?: number; run?: number; guest_run?: number; guest_job?: number; total?: number };
  lang: string | null;
  mode: "warm" | "cold" | null;
  vm: string | null;
  snapshot: string | null;
  streamed: boolean;
  compile: Record<string, any> | null;
  files: Record<string, Buffer>;
  fileErrors: Record<string, "not_found" | "not_a_regular_file" | "too_large" | string>;
  readonly success: boolean;
}

export declare class Event {
  stream: "stdout" | "stderr" | string;
  data: Buffer;
  text: string;
}

export declare class Execution implements AsyncIterable<Event> {
  id: Id;
  result: Result | null;
  stdinErrors: OpdError[];
  [Symbol.asyncIterator](): AsyncIterator<Event>;
  sendStdin(data: string | Uint8Array, opts?: { eof?: boolean }): void;
  closeStdin(): void;
  wait(): Promise<{ events: Event[]; result: Result | null }>;
}

export interface BatchRequest extends ExecOptions { lang: string; code?: string }
export interface BatchResult {
  results: Array<Result | OpdError>;
  count: number;
  ok: number;
  failed: number;
}

export interface SessionOptions {
  idleTimeout?: number;
  lifetime?: number;
  /** one interpreter kept across the session's runs (python) */
  repl?: boolean;
  timeout?: number;
  cpuTimeMs?: number;
  memoryBytes?: number;
  maxProcesses?: number;
  outputMaxBytes?: number;
  fileSizeMaxBytes?: number;
}

export declare class Session {
  client: Client;
  id: string;
  lang: string;
  info: Record<string, any>;
  run(code: string | null, opts?: Omit<ExecOptions, "mode">): Promise<Result>;
  stream(code: string | null, opts?: Omit<StreamOptions, "mode">): Promise<Execution>;
  fork(count?: number): Promise<Session[]>;
  pause(): Promise<{ ok: true; session: string; state: "paused"; disk_bytes: number; timings_ms: Record<string, number> }>;
  resume(): Promise<{ ok: true; session: string; state: string; timings_ms: Record<string, number> }>;
  close(): Promise<void>;
}

/** One test case of Client.runCases: its own input and limits over the request's. */
export type CaseOptions = Omit<ExecOptions, "mode" | "compileTimeout" | "phase">;

export interface CasesResult {
  /** status "ok" or "compile_error"; answer.compile: the compiler's output */
  compile: Result;
  /** per case, in order: its Result or OpdError; empty after a compile error */
  results: Array<Result | OpdError>;
  count: number;
  run: number;
  ok: number;
  failed: number;
}

export declare function execCasesRequest(lang: string, code: string | null, cases: CaseOptions[],
  opts?: Omit<ExecOptions, "mode" | "stdin">): Record<string, unknown>;

export declare function sessionExecRequest(session: string, code: string | null,
  opts?: Omit<ExecOptions, "mode">): Record<string, unknown>;

export declare class Client {
  constructor(opts?: { socketPath?: string; maxFrame?: number });
  socketPath: string;
  connections: number;
  call(request: Record<string, unknown>): Promise<Record<string, any>>;
  run(lang: string, code: string | null, opts?: ExecOptions): Promise<Result>;
  stream(lang: string, code: string | null, opts?: StreamOptions): Promise<Execution>;
  batch(requests: BatchRequest[], opts?: { onResult?: (r: Result | OpdError) => void }): Promise<BatchResult>;
  runCases(lang: string, code: string | null, cases: CaseOptions[],
    opts?: Omit<ExecOptions, "mode" | "stdin"> & { onResult?: (r: Result | OpdError) => void }): Promise<CasesResult>;
  openSession(lang: string, opts?: SessionOptions): Promise<Session>;
  sessions(): Promise<Array<Record<string, any>>>;
  ping(): Promise<{ ok: true; pong: true; version: string; proto: number; serving: boolean; refused: string | null }>;
  status(): Promise<Record<string, any>>;
  metrics(): Promise<string>;
  reload(): Promise<{ ok: true }>;
  snapshot(action: "create" | "list" | "reload" | "verify" | "sync", lang?: string): Promise<Record<string, any>>;
  close(): void;
}

export declare function run(lang: string, code: string | null,
  opts?: ExecOptions & { socketPath?: string }): Promise<Result>;
