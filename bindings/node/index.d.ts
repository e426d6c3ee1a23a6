// Type declarations of the loradock Node binding (index.js).

/** Residency policy of a registered adapter. */
export type Policy = 'disposable' | 'keepWarm' | 'pinned';

/** Options of {@link open}. Unset fields take the C library's defaults. */
export interface RuntimeOptions {
  /** The base model: an HF directory or a GGUF file (required). */
  model: string;
  /** `"cpu"` (the default); other devices are not available in this build. */
  device?: string;
  /** Directory of the adapter store's disk cache (default: a directory under the temp dir). */
  cacheDir?: string;
  /** The device's byte budget (the red line); default 4 GiB. */
  budgetBytes?: number | bigint;
  /** Host-RAM cache of fetched adapter bytes. */
  hostCacheBytes?: number | bigint;
  /** Disk cache size cap. */
  diskCacheBytes?: number | bigint;
  /** Compute threads (0 = all cores). */
  threads?: number;
  /** Sequences decoding at once (default 16). */
  maxSeqs?: number;
  /** Most positions (prompt + generated) of one request (default 4096). */
  maxContext?: number;
  /** Submit queue length; a full queue fails requests with LORADOCK_STATUS_BUSY. */
  submitQueue?: number;
  /** Requests waiting for memory, at most. */
  pendingQueue?: number;
  /** Text events buffered per stream before its request is paused (default 1024). */
  streamBuffer?: number;
  /** A request paused this long for its reader ends with LORADOCK_STATUS_SLOW_CONSUMER (default 5000). */
  slowConsumerTimeoutMs?: number;
  /** KV cache element type. */
  kvType?: 'f32' | 'f16' | 'int8' | 'q4';
  /** Directories local adapter sources must be under. */
  storeRoots?: string[];
  /** IPFS HTTP gateways for `ipfs://` sources. */
  gateways?: string[];
  /** Accept adapters registered without a digest. */
  allowUnverified?: boolean;
  /** Overwrite disposable adapters' memory with zeros when undocked. */
  zeroOnUndock?: boolean;
}

/** One adapter of a request: a registered name, or an inline source (+ digest); weight 1 by default. */
export type AdapterUse =
  | string
  | { name: string; weight?: number }
  | { source: string; digest?: string; weight?: number };

/** A chat message, rendered with the model's chat template. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** A request: exactly one of `prompt`, `messages`, `tokenIds`. */
export interface GenerateRequest {
  prompt?: string;
  messages?: ChatMessage[];
  tokenIds?: ArrayLike<number>;
  /** None = the base model; several compose (exact weighted sum by default). */
  adapters?: AdapterUse[];
  /** `"cat"` (exact sum, default), `"svd"`, `"ties"`, `"dare_linear"`, `"dare_ties"`, `"magnitude_prune"`. */
  combination?: string;
  density?: number;
  svdRank?: number;
  combinationSeed?: number | bigint;
  /** Most tokens to generate (default 128). */
  maxTokens?: number;
  /** 0 = greedy (default). */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  seed?: number | bigint;
  /** Stop strings (not included in the text). */
  stop?: string | string[];
  /** Keep going past end-of-generation tokens. */
  ignoreEos?: boolean;
}

/** Counts and timings of a finished request. */
export interface Usage {
  promptTokens: number;
  completionTokens: number;
  queueMs: number;
  prefillMs: number;
  decodeMs: number;
}

export type FinishReason = 'length' | 'eos' | 'stop' | 'cancelled';

export interface TokenEvent {
  type: 'token';
  text: string;
}

export interface DoneEvent {
  type: 'done';
  finishReason: FinishReason;
  usage: Usage;
}

export type GenerationEvent = TokenEvent | DoneEvent;

/** A snapshot of a runtime's counters, gauges and memory ledger (bytes). */
export interface Stats {
  adaptersRegistered: number;
  adaptersDocked: number;
  docks: number;
  undocks: number;
  evictions: number;
  dockFailures: number;
  requestsSubmitted: number;
  requestsCompleted: number;
  requestsCancelled: number;
  requestsFailed: number;
  tokensGenerated: number;
  tokensPerS: number;
  submitQueueDepth: number;
  pendingQueueDepth: number;
  running: number;
  restarts: number;
  budgetBytes: number;
  usedBytes: number;
  highWaterBytes: number;
  baseWeightBytes: number;
  kvBytes: number;
  adapterBytes: number;
  kvBytesPerToken: number;
  storeFetches: number;
  storeRamHits: number;
  storeDiskHits: number;
  storeBytesDownloaded: number;
  hostCacheBytes: number;
  diskCacheBytes: number;
}

/** A failure reported by loradock. */
export class LoradockError extends Error {
  constructor(code: string, message: string, status: number);
  /** The C status name, e.g. `'LORADOCK_STATUS_UNKNOWN_ADAPTER'`. */
  readonly code: string;
  /** The numeric status. */
  readonly status: number;
}

/** Status numbers by name (loradock.h's `loradock_status`). */
export const Status: Readonly<Record<
  | 'OK' | 'NULL_ARGUMENT' | 'INVALID_ARGUMENT' | 'INVALID_UTF8' | 'STRUCT_SIZE' | 'BUFFER_TOO_SMALL'
  | 'UNKNOWN_ADAPTER' | 'SHUT_DOWN' | 'TIMEOUT' | 'STREAM_ENDED' | 'BUSY' | 'OVER_BUDGET' | 'IO'
  | 'FORMAT' | 'UNSUPPORTED' | 'SHAPE_MISMATCH' | 'MISSING_TENSOR' | 'CONFIG' | 'ADAPTER'
  | 'TOKENIZER' | 'FETCH' | 'DIGEST_MISMATCH' | 'FETCH_TIMEOUT' | 'SLOW_CONSUMER' | 'INTERNAL'
  | 'PANIC' | 'DEVICE', number>>;

/**
 * A request's events. Tokens, then one done event; a failed request throws a
 * {@link LoradockError} instead. Aborting the signal or calling {@link Generation.cancel}
 * ends the iterator with a done event whose finishReason is `'cancelled'` (no throw).
 * Breaking out of `for await` cancels the request.
 */
export class Generation implements AsyncIterableIterator<GenerationEvent> {
  private constructor();
  next(): Promise<IteratorResult<GenerationEvent, undefined>>;
  return(value?: unknown): Promise<IteratorResult<GenerationEvent, undefined>>;
  [Symbol.asyncIterator](): Generation;
  /** Ask the request to end (idempotent). */
  cancel(): void;
}

/** A runtime: one resident base model, adapters docked on demand. */
export class Runtime {
  private constructor();
  /** Register (or re-register as a new generation) an adapter; resolves to its generation. */
  registerAdapter(name: string, source: string, options?: { digest?: string; policy?: Policy }): Promise<number>;
  /** Remove a registered adapter; rejects with LORADOCK_STATUS_UNKNOWN_ADAPTER when unknown. */
  unregisterAdapter(name: string): Promise<void>;
  /** A snapshot of counters and the ledger. */
  stats(): Promise<Stats>;
  /** Start a request; argument errors throw here, request failures from the iterator. */
  generate(request: GenerateRequest, options?: { signal?: AbortSignal }): Generation;
  /** Run a request to its end. */
  generateText(
    request: GenerateRequest,
    options?: { signal?: AbortSignal },
  ): Promise<{ text: string; finishReason: FinishReason; usage: Usage }>;
  /** Shut down and free (off the JS thread); idempotent. */
  close(): Promise<void>;
}

/** Load a model and start a runtime (off the JS thread). */
export function open(options: RuntimeOptions): Promise<Runtime>;

/** The C library's version, "MAJOR.MINOR.PATCH". */
export function version(): string;

/** The name of a numeric status, e.g. 'LORADOCK_STATUS_BUSY'. */
export function statusName(status: number): string;
