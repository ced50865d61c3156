import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DocumentStore, StoreBulkResult } from '../src/index.ts';
import { writeErrorsOf } from '../src/store/document-store.ts';
import { backends } from './backends.ts';

/**
 * The driver subset's semantics the exactly-once bookkeeping relies on, run on every backend:
 * with MONGODB_URL set, the same assertions hold on a real mongod, which is what the embedded
 * store must match.
 */
describe.each(backends)('document store subset on $name', (backend) => {
  let store: DocumentStore;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    ({ store, cleanup } = await backend.open());
  });
  afterAll(async () => {
    await cleanup?.();
  });

  /** The rejection of a bulk write with failed operations: which ones failed (index, code) and what the others did. */
  async function failedBulk(promise: Promise<StoreBulkResult>) {
    const error = await promise.then(
      () => expect.unreachable('the bulk write should have failed'),
      (e: unknown) => e,
    );
    const result = (error as { result: StoreBulkResult }).result;
    return {
      writeErrors: writeErrorsOf(error).map((e) => ({ index: e.index, code: e.code })),
      upsertedCount: result.upsertedCount,
      matchedCount: result.matchedCount,
    };
  }

  it('fails a conditional upsert whose document exists but fails the filter with a duplicate key, leaving it whole', async () => {
    const docs = store.db.collection('conditional');
    const apply = (id: string, marker: string, by: number) => ({
      updateOne: {
        filter: { _id: id, [`applied.${marker}`]: { $exists: false } },
        update: { $setOnInsert: { kind: 'counter' }, $inc: { n: by }, $set: { [`applied.${marker}`]: 1 } },
        upsert: true,
      },
    });
    // Inserted from the filter's _id only: the $exists condition seeds nothing.
    expect(await docs.bulkWrite([apply('a', 'm1', 1)], { ordered: false })).toMatchObject({ upsertedCount: 1, upsertedIds: { 0: 'a' } });
    // m1 again on a: the filter fails, the upsert's insert of _id a is a duplicate. The other
    // operations of the unordered write still apply.
    expect(await failedBulk(docs.bulkWrite([apply('b', 'm1', 5), apply('a', 'm1', 100), apply('a', 'm2', 2)], { ordered: false }))).toEqual(
      { writeErrors: [{ index: 1, code: 11000 }], upsertedCount: 1, matchedCount: 1 },
    );
    expect(await docs.find({}).sort({ _id: 1 }).toArray()).toEqual([
      { _id: 'a', kind: 'counter', n: 3, applied: { m1: 1, m2: 1 } },
      { _id: 'b', kind: 'counter', n: 5, applied: { m1: 1 } },
    ]);
  });

  it('removes fields with $unset, a missing one being no change', async () => {
    const docs = store.db.collection('unset');
    await docs.bulkWrite([{ insertOne: { document: { _id: 'a', n: 1, applied: { m1: 1, m2: 1 } } } }], { ordered: false });
    const unset = (fields: Record<string, ''>) => ({ updateOne: { filter: { _id: 'a' }, update: { $unset: fields } } });
    expect(await docs.bulkWrite([unset({ 'applied.m1': '' })], { ordered: false })).toMatchObject({ matchedCount: 1, modifiedCount: 1 });
    expect(await docs.bulkWrite([unset({ 'applied.m9': '', 'missing.path': '' })], { ordered: false })).toMatchObject({
      matchedCount: 1,
      modifiedCount: 0,
    });
    expect(await docs.bulkWrite([unset({ 'applied.m2': '' })], { ordered: false })).toMatchObject({ modifiedCount: 1 });
    expect(await docs.find({}).toArray()).toEqual([{ _id: 'a', n: 1, applied: {} }]);
    // An update that matches nothing and is no upsert changes nothing.
    expect(
      await docs.bulkWrite([{ updateOne: { filter: { _id: 'none' }, update: { $unset: { n: '' } } } }], { ordered: false }),
    ).toMatchObject({ matchedCount: 0, upsertedCount: 0 });
  });

  it('deletes one matching document per deleteOne', async () => {
    const docs = store.db.collection('delete');
    await docs.bulkWrite(
      [
        { insertOne: { document: { _id: 'a', n: 1 } } },
        { insertOne: { document: { _id: 'b', n: 2 } } },
        { insertOne: { document: { _id: 'c', n: 3 } } },
      ],
      { ordered: false },
    );
    const result = await docs.bulkWrite(
      [{ deleteOne: { filter: { _id: 'a' } } }, { deleteOne: { filter: { _id: 'a' } } }, { deleteOne: { filter: { _id: 'c', n: 4 } } }],
      { ordered: false },
    );
    expect(result.deletedCount).toBe(1);
    expect(await docs.find({}).sort({ _id: 1 }).toArray()).toEqual([
      { _id: 'b', n: 2 },
      { _id: 'c', n: 3 },
    ]);
    // A deleted _id can be inserted again.
    await docs.bulkWrite([{ insertOne: { document: { _id: 'a', n: 10 } } }], { ordered: false });
    expect(await docs.find({ _id: 'a' }).toArray()).toEqual([{ _id: 'a', n: 10 }]);
  });

  it('finds documents by a list of _ids together with other conditions', async () => {
    const docs = store.db.collection('by_ids');
    await docs.bulkWrite(
      ['a', 'b', 'c', 'd'].map((id, i) => ({ insertOne: { document: { _id: id, batch: i % 2 === 0 ? 'x' : 'y' } } })),
      { ordered: false },
    );
    const found = await docs
      .find({ _id: { $in: ['a', 'b', 'c', 'a', 'zz'] }, batch: 'x' })
      .sort({ _id: 1 })
      .toArray();
    expect(found).toEqual([
      { _id: 'a', batch: 'x' },
      { _id: 'c', batch: 'x' },
    ]);
  });
});
