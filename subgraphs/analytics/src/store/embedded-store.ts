import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { appendFile, truncate } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { acquireProcessLock } from '@ghostpay/platform';
import {
  type DocumentStore,
  duplicateKeyErrorCode,
  type StoreBulkOperation,
  type StoreBulkResult,
  type StoreCollection,
  type StoreCursor,
  type StoreDocument,
  type StoreFilter,
  type StoreIndexOptions,
  type StoreSort,
  type StoreUpdate,
  type StoreWriteError,
} from './document-store.ts';

export interface EmbeddedStoreOptions {
  /** Directory for the collection files (created when missing), e.g. `.data/analytics`. */
  dir: string;
  /**
   * How often TTL indexes are applied, like MongoDB's TTL monitor: an expired document stays
   * visible to reads and writes until the sweep deletes it. @default 60000
   */
  ttlSweepIntervalMs?: number;
  /** A log is rewritten as a snapshot once it holds this many lines more than live documents. @default 10000 */
  compactAfterLines?: number;
  /**
   * The longest a write may take, from the call (queueing behind earlier writes included) to its
   * answer. A write not done by then (a stalled disk or network file system) fails with
   * `EmbeddedWriteTimeoutError` having changed nothing: it never becomes visible, and whatever of
   * it reaches the file later is cut off as after a failed append. `close()` waits no longer
   * either. @default 10000
   */
  writeTimeoutMs?: number;
  /**
   * Documents a collection holds at most (all of them are in memory). A bulk write that would
   * take a collection past it fails as a whole with `EmbeddedStoreFullError`, having changed
   * nothing; updates and deletions that do not add documents still apply, and the TTL sweep frees
   * room. A collection loaded with more (the limit lowered) keeps them. @default 1000000
   */
  maxDocuments?: number;
  /** The clock, for tests. @default Date.now */
  now?: () => number;
}

/**
 * A bulk write that would take a collection past `maxDocuments`: nothing of it was applied.
 * Request logs leave at the end of their retention, aggregates at the end of theirs.
 */
export class EmbeddedStoreFullError extends Error {
  readonly maxDocuments: number;
  constructor(file: string, maxDocuments: number) {
    super(
      `embedded store: ${file} holds its limit of ${maxDocuments} documents (ANALYTICS_EMBEDDED_MAX_DOCUMENTS); nothing of this write ` +
        'was applied. Room is made as request logs and aggregates expire (ANALYTICS_LOG_RETENTION_DAYS, ANALYTICS_AGGREGATE_RETENTION_DAYS); raise the limit, shorten the retention, or set MONGODB_URL.',
    );
    this.name = 'EmbeddedStoreFullError';
    this.maxDocuments = maxDocuments;
  }
}

/** A write to the embedded store that did not finish within `writeTimeoutMs`: nothing of it was applied. */
export class EmbeddedWriteTimeoutError extends Error {
  constructor(file: string, ms: number) {
    super(`embedded store: write to ${file} did not finish within ${ms} ms; nothing of it was applied`);
    this.name = 'EmbeddedWriteTimeoutError';
  }
}

/**
 * Why an embedded store could not be opened: another process (or this one) has its directory
 * open. Two writers would each append to the collection files from their own view of the data
 * and replay the other's lines only on their next start: counts lost or doubled, documents
 * resurrected.
 */
export class EmbeddedStoreInUseError extends Error {
  readonly dir: string;
  readonly pid: number;
  constructor(dir: string, pid: number) {
    super(
      `${dir} is open in another process (${pid}${pid === process.pid ? ', this one' : ''}): the embedded analytics store allows one ` +
        'process per directory. Stop it first (npm start or an analytics service on the same GHOSTPAY_DATA_DIR), or set MONGODB_URL ' +
        `to run several. If no such process runs, delete ${dir}.lock.`,
    );
    this.name = 'EmbeddedStoreInUseError';
    this.dir = dir;
    this.pid = pid;
  }
}

/**
 * Documents are persisted as JSON lines; Dates survive the round trip as `{"$date": iso}` (the
 * MongoDB extended-JSON form).
 */
function encode(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key, v) {
    const raw = this[key];
    return raw instanceof Date ? { $date: raw.toISOString() } : v;
  });
}

function decode(text: string): unknown {
  return JSON.parse(text, (_key, v) =>
    v && typeof v === 'object' && typeof v.$date === 'string' && Object.keys(v).length === 1 ? new Date(v.$date) : v,
  );
}

interface LogRecord {
  /** A document as it now is. */
  p?: StoreDocument;
  /** The `_id` of a deleted document. */
  d?: unknown;
}

/** One line of a collection file, or undefined when it is not a whole record (a torn write). */
function parseRecord(line: string): LogRecord | undefined {
  let record: unknown;
  try {
    record = decode(line);
  } catch {
    return undefined;
  }
  return isPlainObject(record) && (isPlainObject(record.p) || 'd' in record) ? (record as LogRecord) : undefined;
}

function idKey(id: unknown): string {
  return typeof id === 'string' ? `s:${id}` : `j:${encode(id)}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function getPath(doc: StoreDocument, path: string): unknown {
  let current: unknown = doc;
  for (const part of path.split('.')) {
    if (!isPlainObject(current)) return undefined;
    current = current[part];
  }
  return current;
}

function setPath(doc: StoreDocument, path: string, value: unknown): void {
  const parts = path.split('.');
  let current: Record<string, unknown> = doc;
  for (const part of parts.slice(0, -1)) {
    const next = current[part];
    if (!isPlainObject(next)) current[part] = {};
    current = current[part] as Record<string, unknown>;
  }
  current[parts.at(-1)!] = value;
}

/** BSON comparison order for the types the analytics code stores: null < numbers < strings < objects < arrays < booleans < dates. */
function typeRank(value: unknown): number {
  if (value === undefined || value === null) return 0;
  if (typeof value === 'number') return 1;
  if (typeof value === 'string') return 2;
  if (Array.isArray(value)) return 4;
  if (typeof value === 'boolean') return 5;
  if (value instanceof Date) return 6;
  return 3;
}

function compareValues(a: unknown, b: unknown): number {
  const ra = typeRank(a);
  const rb = typeRank(b);
  if (ra !== rb) return ra - rb;
  if (a instanceof Date && b instanceof Date) return a.getTime() - b.getTime();
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  const ea = encode(a);
  const eb = encode(b);
  return ea < eb ? -1 : ea > eb ? 1 : 0;
}

function equalValues(a: unknown, b: unknown): boolean {
  if ((a === undefined || a === null) && (b === undefined || b === null)) return true;
  return typeRank(a) === typeRank(b) && compareValues(a, b) === 0;
}

/** MongoDB applies a condition on an array field to the array itself and to each element. */
function anyValue(value: unknown, predicate: (v: unknown) => boolean): boolean {
  return predicate(value) || (Array.isArray(value) && value.some(predicate));
}

/** Range operators only compare values of the same type, as MongoDB does. */
function comparable(a: unknown, b: unknown): boolean {
  return typeRank(a) === typeRank(b) && typeRank(a) !== 0;
}

function matchesCondition(value: unknown, condition: unknown): boolean {
  if (!isPlainObject(condition) || !Object.keys(condition).some((k) => k.startsWith('$'))) {
    return anyValue(value, (v) => equalValues(v, condition));
  }
  for (const [op, operand] of Object.entries(condition)) {
    switch (op) {
      case '$eq':
        if (!anyValue(value, (v) => equalValues(v, operand))) return false;
        break;
      case '$ne':
        if (anyValue(value, (v) => equalValues(v, operand))) return false;
        break;
      case '$gt':
        if (!anyValue(value, (v) => comparable(v, operand) && compareValues(v, operand) > 0)) return false;
        break;
      case '$gte':
        if (!anyValue(value, (v) => comparable(v, operand) && compareValues(v, operand) >= 0)) return false;
        break;
      case '$lt':
        if (!anyValue(value, (v) => comparable(v, operand) && compareValues(v, operand) < 0)) return false;
        break;
      case '$lte':
        if (!anyValue(value, (v) => comparable(v, operand) && compareValues(v, operand) <= 0)) return false;
        break;
      case '$in':
        if (!(operand as unknown[]).some((o) => anyValue(value, (v) => equalValues(v, o)))) return false;
        break;
      case '$nin':
        if ((operand as unknown[]).some((o) => anyValue(value, (v) => equalValues(v, o)))) return false;
        break;
      case '$exists':
        if ((value !== undefined) !== Boolean(operand)) return false;
        break;
      default:
        // Loud on purpose: an operator outside the subset must not silently match everything.
        throw new Error(`embedded store: unsupported query operator ${op}`);
    }
  }
  return true;
}

const queryOperators = new Set(['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists']);

/** Rejects operators outside the subset up front, so a bad query fails even on an empty collection. */
function validateFilter(filter: StoreFilter): void {
  for (const [key, condition] of Object.entries(filter)) {
    if (key === '$or' || key === '$and') {
      for (const f of condition as StoreFilter[]) validateFilter(f);
    } else if (key.startsWith('$')) {
      throw new Error(`embedded store: unsupported query operator ${key}`);
    } else if (isPlainObject(condition)) {
      for (const op of Object.keys(condition)) {
        if (op.startsWith('$') && !queryOperators.has(op)) throw new Error(`embedded store: unsupported query operator ${op}`);
      }
    }
  }
}

export function matchesFilter(doc: StoreDocument, filter: StoreFilter): boolean {
  for (const [key, condition] of Object.entries(filter)) {
    if (key === '$or') {
      if (!(condition as StoreFilter[]).some((f) => matchesFilter(doc, f))) return false;
    } else if (key === '$and') {
      if (!(condition as StoreFilter[]).every((f) => matchesFilter(doc, f))) return false;
    } else if (key.startsWith('$')) {
      throw new Error(`embedded store: unsupported query operator ${key}`);
    } else if (!matchesCondition(getPath(doc, key), condition)) {
      return false;
    }
  }
  return true;
}

function unsetPath(doc: StoreDocument, path: string): void {
  const parts = path.split('.');
  let current: unknown = doc;
  for (const part of parts.slice(0, -1)) {
    if (!isPlainObject(current)) return;
    current = current[part];
  }
  if (isPlainObject(current)) delete current[parts.at(-1)!];
}

/** An operation of a bulk write that failed, with the code MongoDB gives it. */
class WriteOperationError extends Error {
  readonly code: number;
  constructor(message: string, code: number) {
    super(message);
    this.code = code;
  }
}

/** MongoDB's TypeMismatch, e.g. `$inc` on a string. */
const typeMismatchCode = 14;
/** MongoDB's FailedToParse, for an operator it does not know (here: outside the subset). */
const failedToParseCode = 9;

function applyUpdate(doc: StoreDocument, update: StoreUpdate, inserting: boolean): void {
  for (const op of Object.keys(update)) {
    if (!['$set', '$setOnInsert', '$inc', '$max', '$unset'].includes(op)) {
      throw new WriteOperationError(`embedded store: unsupported update operator ${op}`, failedToParseCode);
    }
  }
  if (inserting) for (const [path, value] of Object.entries(update.$setOnInsert ?? {})) setPath(doc, path, structuredClone(value));
  for (const [path, value] of Object.entries(update.$set ?? {})) setPath(doc, path, structuredClone(value));
  for (const [path, by] of Object.entries(update.$inc ?? {})) {
    const current = getPath(doc, path);
    if (current !== undefined && typeof current !== 'number') {
      throw new WriteOperationError(`embedded store: cannot $inc non-number at ${path}`, typeMismatchCode);
    }
    setPath(doc, path, (current ?? 0) + by);
  }
  for (const [path, value] of Object.entries(update.$max ?? {})) {
    const current = getPath(doc, path);
    if (current === undefined || compareValues(value, current) > 0) setPath(doc, path, structuredClone(value));
  }
  for (const path of Object.keys(update.$unset ?? {})) unsetPath(doc, path);
}

function sortDocuments(docs: StoreDocument[], spec: StoreSort): StoreDocument[] {
  const keys = Object.entries(spec);
  return docs.sort((a, b) => {
    for (const [path, direction] of keys) {
      const c = compareValues(getPath(a, path), getPath(b, path));
      if (c !== 0) return c * direction;
    }
    return 0;
  });
}

class DuplicateKeyError extends WriteOperationError {
  constructor(id: unknown) {
    super(`E11000 duplicate key error: _id ${typeof id === 'string' ? id : encode(id)}`, duplicateKeyErrorCode);
  }
}

/**
 * A bulk write's documents as it leaves them, not yet visible: a document, or null for one it
 * deleted (with the `_id` to write in the deletion record).
 */
type Staged = Map<string, StoreDocument | null>;

interface TtlIndex {
  field: string;
  expireAfterSeconds: number;
}

class EmbeddedCollection implements StoreCollection {
  private readonly docs = new Map<string, StoreDocument>();
  private readonly ttl: TtlIndex[] = [];
  private readonly file: string;
  private linesInLog = 0;
  /** Bytes of whole lines in the file: where the next append starts. */
  private fileBytes = 0;
  /**
   * A failed append left text after `fileBytes` that could not be cut off at once: it is cut
   * before the next append or at close, whichever comes first.
   */
  private tailDirty = false;
  /** After a failed compaction, the line count at which it is tried again. */
  private compactRetryAtLines = 0;
  private writes: Promise<void> = Promise.resolve();
  private readonly options: Required<Pick<EmbeddedStoreOptions, 'compactAfterLines' | 'now' | 'writeTimeoutMs' | 'maxDocuments'>>;

  constructor(
    file: string,
    options: Required<Pick<EmbeddedStoreOptions, 'compactAfterLines' | 'now' | 'writeTimeoutMs' | 'maxDocuments'>>,
  ) {
    this.file = file;
    this.options = options;
    this.load();
  }

  private load(): void {
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    // Every append ends with a newline, so text after the last one is what a crash mid-append
    // left. (A newline byte never occurs inside a multi-byte UTF-8 character.)
    const end = bytes.lastIndexOf(0x0a) + 1;
    for (const line of bytes.toString('utf8', 0, end).split('\n')) {
      if (!line) continue;
      // Not a whole record: a torn line that an earlier version glued the next append onto.
      const record = parseRecord(line);
      if (record) this.replay(record);
    }
    this.fileBytes = end;
    if (end === bytes.length) return;
    // The file must end in a newline before anything is appended to it, or the next record is
    // glued onto the tail and both are unreadable on the next start.
    const tail = parseRecord(bytes.toString('utf8', end));
    if (tail) {
      // A whole record that lost only its newline: it is served from now on, so it must stay.
      // Adding the newline keeps it in place (re-writing it would leave a moment without it).
      this.replay(tail);
      appendFileSync(this.file, '\n');
      this.fileBytes = bytes.length + 1;
    } else {
      truncateSync(this.file, end);
    }
  }

  private replay(record: LogRecord): void {
    this.linesInLog++;
    if (record.p) this.docs.set(idKey(record.p._id), record.p);
    else this.docs.delete(idKey(record.d));
  }

  /**
   * Runs write steps one at a time, in call order: each one computes its changes from memory as
   * the steps before it left it. A failed step does not stop the ones after it; its error goes
   * to its own caller.
   */
  private serialize<T>(step: () => Promise<T>): Promise<T> {
    const run = this.writes.then(step);
    this.writes = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * Runs a write step (serialized) whose caller gets an answer within `writeTimeoutMs`. The step
   * calls `commit` once its lines are in the file, just before changing memory: from then on the
   * write counts as done. When the time runs out first, the caller gets `EmbeddedWriteTimeoutError`
   * and `commit` answers false: the step then changes nothing (and `append` cuts its lines off),
   * or, if it had not started, never runs.
   */
  private bounded<T>(step: (commit: () => boolean) => Promise<T>): Promise<T> {
    let state: 'pending' | 'committed' | 'abandoned' = 'pending';
    const ms = this.options.writeTimeoutMs;
    const commit = () => {
      if (state === 'abandoned') return false;
      state = 'committed';
      return true;
    };
    const run = this.serialize(() => (state === 'abandoned' ? Promise.reject(new EmbeddedWriteTimeoutError(this.file, ms)) : step(commit)));
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (state !== 'pending') return;
        state = 'abandoned';
        reject(new EmbeddedWriteTimeoutError(this.file, ms));
      }, ms);
      run.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  /**
   * Appends lines to the file; memory is changed by the caller only once this succeeded. With
   * `commit` (a bounded write), the append counts only if `commit()` still allows it once the
   * lines are in the file; otherwise they are cut off again, as after a failed append.
   */
  private async append(lines: string[], commit: () => boolean = () => true): Promise<void> {
    if (lines.length === 0) {
      if (!commit()) throw new EmbeddedWriteTimeoutError(this.file, this.options.writeTimeoutMs);
      return;
    }
    await this.cutDirtyTail();
    const text = `${lines.join('\n')}\n`;
    try {
      await appendFile(this.file, text);
      // The caller was already told this write failed (it took too long): it must not appear.
      if (!commit()) throw new EmbeddedWriteTimeoutError(this.file, this.options.writeTimeoutMs);
    } catch (error) {
      // Disk full or an I/O error can leave part of the text, whole lines included. Cut it off
      // now: left in place, a shutdown before the next append would have those lines of an
      // unacknowledged batch loaded on the next start, and the client's retry would find them
      // stored (counted as duplicates, never added to the aggregates).
      this.tailDirty = true;
      try {
        await this.cutDirtyTail();
      } catch {
        // Still dirty: cut before the next append or at close; the caller gets the append's error.
      }
      throw error;
    }
    this.fileBytes += Buffer.byteLength(text);
    this.linesInLog += lines.length;
  }

  /** Cuts the file back to its last whole acknowledged line after a failed append. */
  private async cutDirtyTail(): Promise<void> {
    if (!this.tailDirty) return;
    await truncate(this.file, this.fileBytes);
    this.tailDirty = false;
  }

  /**
   * Rewrites the log as one line per live document once it is long enough; rename makes the
   * switch atomic. Runs after a write is in the file and in memory, so a failure here is not the
   * write's: the log stays as it was and compaction is tried again later.
   */
  private compactIfDue(): void {
    if (this.linesInLog - this.docs.size <= this.options.compactAfterLines || this.linesInLog < this.compactRetryAtLines) return;
    const tmp = `${this.file}.tmp`;
    const lines = [...this.docs.values()].map((doc) => encode({ p: doc }));
    const text = lines.length ? `${lines.join('\n')}\n` : '';
    try {
      writeFileSync(tmp, text);
      renameSync(tmp, this.file);
    } catch {
      this.compactRetryAtLines = this.linesInLog + this.options.compactAfterLines;
      try {
        // A partial snapshot on a full disk would keep the next appends from fitting.
        rmSync(tmp, { force: true });
      } catch {
        // Not a file (nothing was written to it) or not removable: the next attempt overwrites it.
      }
      return;
    }
    this.linesInLog = lines.length;
    this.fileBytes = Buffer.byteLength(text);
    this.tailDirty = false;
  }

  async bulkWrite(operations: StoreBulkOperation[], _options: { ordered: false }): Promise<StoreBulkResult> {
    return this.bounded(async (commit) => {
      const result: StoreBulkResult = {
        insertedCount: 0,
        matchedCount: 0,
        modifiedCount: 0,
        upsertedCount: 0,
        deletedCount: 0,
        upsertedIds: {},
      };
      // The batch's documents as it leaves them, built on copies: memory takes them only once
      // they are in the file, so a failed append leaves memory as it was and a retry redoes all.
      const staged: Staged = new Map();
      const deletedIds = new Map<string, unknown>();
      const exists = (key: string) => (staged.has(key) ? staged.get(key) !== null : this.docs.has(key));
      const errors: StoreWriteError[] = [];
      operations.forEach((operation, index) => {
        try {
          if ('insertOne' in operation) {
            const doc = structuredClone(operation.insertOne.document);
            doc._id ??= randomBytes(12).toString('hex');
            const key = idKey(doc._id);
            if (exists(key)) throw new DuplicateKeyError(doc._id);
            staged.set(key, doc);
            result.insertedCount++;
            return;
          }
          if ('deleteOne' in operation) {
            const { filter } = operation.deleteOne;
            validateFilter(filter);
            const existing = this.findMatching(filter, 1, staged)[0];
            if (existing) {
              const key = idKey(existing._id);
              staged.set(key, null);
              deletedIds.set(key, existing._id);
              result.deletedCount++;
            }
            return;
          }
          if (!('updateOne' in operation))
            throw new WriteOperationError('embedded store: unsupported bulk write operation', failedToParseCode);
          const { filter, update, upsert } = operation.updateOne;
          validateFilter(filter);
          const existing = this.findMatching(filter, 1, staged)[0];
          if (existing) {
            result.matchedCount++;
            // Updated on a copy: an operator that throws leaves the document whole, as in MongoDB.
            const updated = structuredClone(existing);
            applyUpdate(updated, update, false);
            if (encode(updated) !== encode(existing)) {
              result.modifiedCount++;
              staged.set(idKey(existing._id), updated);
            }
            return;
          }
          if (!upsert) return;
          // MongoDB seeds an upserted document with the filter's equality fields.
          const doc: StoreDocument = {};
          for (const [key, value] of Object.entries(filter)) {
            if (!key.startsWith('$') && !(isPlainObject(value) && Object.keys(value).some((k) => k.startsWith('$')))) {
              setPath(doc, key, structuredClone(value));
            }
          }
          applyUpdate(doc, update, true);
          doc._id ??= randomBytes(12).toString('hex');
          const key = idKey(doc._id);
          // The filter named an `_id` that exists but failed its other conditions: MongoDB's
          // insert of that `_id` fails on the unique `_id` index, it never replaces the document.
          if (exists(key)) throw new DuplicateKeyError(doc._id);
          staged.set(key, doc);
          result.upsertedCount++;
          result.upsertedIds[index] = doc._id;
        } catch (error) {
          // Unordered: one failing operation does not stop the others. Reported as the driver's
          // WriteError is: the operation's index, a code, a message.
          const code = error instanceof WriteOperationError ? error.code : failedToParseCode;
          errors.push({ index, code, errmsg: (error as Error).message });
        }
      });
      // Documents the batch adds, less those it deletes: past the limit, nothing is written.
      let growth = 0;
      for (const [key, doc] of staged) {
        if (doc !== null && !this.docs.has(key)) growth++;
        else if (doc === null && this.docs.has(key)) growth--;
      }
      if (growth > 0 && this.docs.size + growth > this.options.maxDocuments) {
        throw new EmbeddedStoreFullError(this.file, this.options.maxDocuments);
      }
      await this.append(
        [...staged].map(([key, doc]) => (doc === null ? encode({ d: deletedIds.get(key) }) : encode({ p: doc }))),
        commit,
      );
      for (const [key, doc] of staged) {
        if (doc === null) this.docs.delete(key);
        else this.docs.set(key, doc);
      }
      this.compactIfDue();
      if (errors.length > 0) {
        throw Object.assign(new Error(`embedded store: ${errors.length} bulk write operation(s) failed: ${errors[0]?.errmsg}`), {
          code: errors[0]!.code,
          result,
          writeErrors: errors,
        });
      }
      return result;
    });
  }

  /**
   * Matching documents as stored, or as `staged` (a bulk write in progress) has them. Documents
   * past their TTL are included until `sweep` deletes them, as in MongoDB, where a TTL index
   * only tells the monitor what to delete: neither `find` nor an upsert's match filters on it.
   * (Hiding them from the upsert stored an emitter's retry of an event older than the retention
   * a second time, and counted it twice, where MongoDB counts it once.)
   */
  private findMatching(filter: StoreFilter, limit = Number.POSITIVE_INFINITY, staged?: Staged): StoreDocument[] {
    const out: StoreDocument[] = [];
    const lookup = (key: string) => (staged?.has(key) ? staged.get(key) : this.docs.get(key)) ?? undefined;
    // Every write the analytics code makes is keyed by `_id` equality: answer it from the map
    // (O(1)) instead of scanning every stored document, which made ingestion slow down as the
    // store grew. The same for `_id: { $in: [...] }` (reading back a batch's request logs).
    const id = filter._id;
    if (id !== undefined && !isPlainObject(id) && !Array.isArray(id)) {
      const doc = lookup(idKey(id));
      return doc && matchesFilter(doc, filter) ? [doc] : [];
    }
    if (isPlainObject(id) && Object.keys(id).length === 1 && Array.isArray(id.$in)) {
      const seen = new Set<string>();
      for (const value of id.$in) {
        // An array or object in $in is matched by scanning below (never used here).
        if (isPlainObject(value) || Array.isArray(value)) return this.scan(filter, limit, staged);
        const key = idKey(value);
        if (seen.has(key)) continue;
        seen.add(key);
        const doc = lookup(key);
        if (doc && matchesFilter(doc, filter)) {
          out.push(doc);
          if (out.length >= limit) break;
        }
      }
      return out;
    }
    return this.scan(filter, limit, staged);
  }

  private scan(filter: StoreFilter, limit: number, staged?: Staged): StoreDocument[] {
    const out: StoreDocument[] = [];
    for (const doc of this.current(staged)) {
      if (matchesFilter(doc, filter)) {
        out.push(doc);
        if (out.length >= limit) break;
      }
    }
    return out;
  }

  private *current(staged?: Staged): Iterable<StoreDocument> {
    for (const [key, doc] of this.docs) {
      const current = staged?.has(key) ? staged.get(key) : doc;
      if (current) yield current;
    }
    if (staged) for (const [key, doc] of staged) if (doc && !this.docs.has(key)) yield doc;
  }

  /** Throws `EmbeddedStoreFullError` when documents with these `_id`s (those not stored yet) would not fit. */
  checkRoom(ids: unknown[]): void {
    const added = new Set(ids.map(idKey).filter((key) => !this.docs.has(key))).size;
    if (added > 0 && this.docs.size + added > this.options.maxDocuments) {
      throw new EmbeddedStoreFullError(this.file, this.options.maxDocuments);
    }
  }

  private expired(doc: StoreDocument, now: number): boolean {
    for (const { field, expireAfterSeconds } of this.ttl) {
      const value = getPath(doc, field);
      if (value instanceof Date && value.getTime() + expireAfterSeconds * 1000 <= now) return true;
    }
    return false;
  }

  find(filter: StoreFilter): StoreCursor {
    let sortSpec: StoreSort | undefined;
    let limitCount = 0;
    const cursor: StoreCursor = {
      sort: (spec) => {
        sortSpec = spec;
        return cursor;
      },
      limit: (count) => {
        limitCount = count;
        return cursor;
      },
      toArray: async () => {
        validateFilter(filter);
        let docs = this.findMatching(filter);
        if (sortSpec) docs = sortDocuments(docs, sortSpec);
        // MongoDB treats limit(0) as no limit.
        if (limitCount > 0) docs = docs.slice(0, limitCount);
        return docs.map((doc) => structuredClone(doc));
      },
    };
    return cursor;
  }

  async createIndex(keys: StoreSort, options: StoreIndexOptions = {}): Promise<string> {
    const name =
      options.name ??
      Object.entries(keys)
        .map(([k, d]) => `${k}_${d}`)
        .join('_');
    // Only TTL has behaviour here; other indexes are accepted and queries scan (see README).
    if (options.expireAfterSeconds !== undefined) {
      const field = Object.keys(keys)[0]!;
      const existing = this.ttl.find((t) => t.field === field);
      if (existing) existing.expireAfterSeconds = options.expireAfterSeconds;
      else this.ttl.push({ field, expireAfterSeconds: options.expireAfterSeconds });
      // What expired while no process had the store open goes now (MongoDB's monitor keeps
      // running while the service is down), not at the first tick: a process restarted more
      // often than the sweep interval (npm start in development) never deleted anything. A
      // sweep that fails (disk full) does not fail the index: the timer tries again.
      await this.sweep().catch(() => undefined);
    }
    return name;
  }

  /** Deletes expired documents, as MongoDB's TTL monitor does; until then they are served like any other. */
  async sweep(): Promise<number> {
    if (this.ttl.length === 0) return 0;
    return this.serialize(async () => {
      const now = this.options.now();
      const removed = [...this.docs].filter(([, doc]) => this.expired(doc, now));
      // As for bulk writes: deleted from memory once the deletions are in the file.
      await this.append(removed.map(([, doc]) => encode({ d: doc._id })));
      for (const [key] of removed) this.docs.delete(key);
      this.compactIfDue();
      return removed.length;
    });
  }

  /**
   * Waits for the writes under way, then cuts off what a failed append left if that could not be
   * done at the time: the file must hold no line of an unacknowledged batch when the process
   * stops. Rejects when that cut fails.
   */
  async settle(): Promise<void> {
    await this.serialize(() => this.cutDirtyTail());
  }
}

export interface EmbeddedStore extends DocumentStore {
  /** `writeTimeoutMs`: a write is applied within it or not at all. */
  readonly writeBoundMs: number;
  /** Applies TTL indexes now (the timer does it every `ttlSweepIntervalMs`). Returns documents removed. */
  sweepExpired(): Promise<number>;
}

/** `EmbeddedStoreOptions.maxDocuments` unless a caller sets another. */
export const defaultMaxDocuments = 1_000_000;

/**
 * The analytics store used when `MONGODB_URL` is unset: the `StoreDb` subset over in-memory
 * maps, persisted as one append-only JSON-lines file per collection under `dir` and compacted
 * into a snapshot as the log grows. One process owns the directory: it is locked while the
 * store is open (`<dir>.lock` holding the pid, platform's `acquireProcessLock`; a lock whose
 * process is gone is taken over), and a second opener, in another process or this one, gets
 * `EmbeddedStoreInUseError` (a rejection, the store being async as `connectMongoStore` is).
 * Limits: see README.
 */
export async function openEmbeddedStore(options: EmbeddedStoreOptions): Promise<EmbeddedStore> {
  const {
    ttlSweepIntervalMs = 60_000,
    compactAfterLines = 10_000,
    writeTimeoutMs = 10_000,
    maxDocuments = defaultMaxDocuments,
    now = Date.now,
  } = options;
  const dir = resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  const lock = acquireProcessLock(`${dir}.lock`, (holderPid) => new EmbeddedStoreInUseError(dir, holderPid));
  const collections = new Map<string, EmbeddedCollection>();
  const collection = (name: string) => {
    if (!/^[a-z][a-z0-9_-]{0,63}$/i.test(name)) throw new Error(`embedded store: invalid collection name ${name}`);
    let c = collections.get(name);
    if (!c) {
      c = new EmbeddedCollection(join(dir, `${name}.jsonl`), { compactAfterLines, now, writeTimeoutMs, maxDocuments });
      collections.set(name, c);
    }
    return c;
  };
  const sweepExpired = async () => {
    let removed = 0;
    for (const c of collections.values()) removed += await c.sweep();
    return removed;
  };
  const timer = setInterval(() => {
    sweepExpired().catch(() => undefined);
  }, ttlSweepIntervalMs);
  timer.unref();
  return {
    kind: 'embedded',
    db: {
      collection,
      checkRoom(adds) {
        for (const [name, ids] of Object.entries(adds)) collection(name).checkRoom(ids);
      },
    },
    writeBoundMs: writeTimeoutMs,
    sweepExpired,
    async ping() {},
    async close() {
      clearInterval(timer);
      // Every collection is settled even when one fails; the first failure is reported. A stalled
      // write is not waited for past writeTimeoutMs: what it leaves in the file is loaded on the
      // next start as after a crash in the middle of an append (see README). The lock is
      // released either way, as a process that stops releases it (a stalled append that
      // completes later leaves what it would after such a crash).
      let bound: NodeJS.Timeout | undefined;
      const stalled = new Promise<'stalled'>((done) => {
        bound = setTimeout(() => done('stalled'), writeTimeoutMs);
      });
      try {
        const settled = await Promise.race([Promise.allSettled([...collections.values()].map((c) => c.settle())), stalled]);
        if (settled === 'stalled') throw new Error(`embedded store: a write under ${dir} is stalled; closed without it`);
        const failed = settled.find((s) => s.status === 'rejected');
        if (failed) throw failed.reason;
      } finally {
        clearTimeout(bound);
        lock.release();
      }
    },
  };
}
