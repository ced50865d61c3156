import { createServer, type Server, type Socket } from 'node:net';
import { BSON, type Document } from 'mongodb';

/**
 * A stand-in for mongod on a loopback port, speaking enough of the wire protocol for the real
 * `mongodb` driver to connect and send commands: the handshake (legacy hello in OP_QUERY), then
 * OP_MSG. It records every command the driver sends after the handshake and answers it as an
 * empty standalone server would (writes acknowledged, upserts reported, finds empty), or, when
 * `hang` is set, never answers it: a mongod that stopped responding. No mongod can run on this
 * machine; this lets the driver's own option handling and time-outs be tested.
 */
export interface MongoStandIn {
  url: string;
  /** Commands received after the handshake, in order (monitoring's hello excluded). */
  commands: Document[];
  /** When true, commands other than the handshake and hello get no answer. */
  hang: boolean;
  close(): Promise<void>;
}

const opReply = 1;
const opQuery = 2004;
const opMsg = 2013;

function helloReply(): Document {
  return {
    helloOk: true,
    ismaster: true,
    isWritablePrimary: true,
    maxBsonObjectSize: 16 * 1024 * 1024,
    maxMessageSizeBytes: 48_000_000,
    maxWriteBatchSize: 100_000,
    localTime: new Date(),
    logicalSessionTimeoutMinutes: 30,
    connectionId: 1,
    minWireVersion: 0,
    maxWireVersion: 21,
    readOnly: false,
    ok: 1,
  };
}

/** What an empty standalone answers to the commands the analytics store sends. */
function answer(command: Document): Document {
  const name = Object.keys(command)[0];
  switch (name) {
    case 'insert':
      return { n: (command.documents as unknown[]).length, ok: 1 };
    case 'update': {
      const updates = command.updates as { q: Document; upsert?: boolean }[];
      const upserted = updates.flatMap((u, index) => (u.upsert ? [{ index, _id: u.q._id }] : []));
      return { n: updates.length, nModified: 0, upserted, ok: 1 };
    }
    case 'delete':
      return { n: (command.deletes as unknown[]).length, ok: 1 };
    case 'find':
      return { cursor: { id: BSON.Long.fromNumber(0), ns: `${command.$db}.${command.find}`, firstBatch: [] }, ok: 1 };
    default:
      return { ok: 1 };
  }
}

function header(length: number, requestId: number, responseTo: number, opCode: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32LE(length, 0);
  b.writeInt32LE(requestId, 4);
  b.writeInt32LE(responseTo, 8);
  b.writeInt32LE(opCode, 12);
  return b;
}

function replyOpQuery(socket: Socket, responseTo: number, doc: Document): void {
  const body = Buffer.from(BSON.serialize(doc));
  const fixed = Buffer.alloc(20); // responseFlags, cursorID (8), startingFrom, numberReturned
  fixed.writeInt32LE(1, 16);
  socket.write(Buffer.concat([header(16 + 20 + body.length, 0, responseTo, opReply), fixed, body]));
}

function replyOpMsg(socket: Socket, responseTo: number, doc: Document): void {
  const body = Buffer.from(BSON.serialize(doc));
  const flags = Buffer.alloc(5); // flagBits, then section kind 0
  socket.write(Buffer.concat([header(16 + 5 + body.length, 0, responseTo, opMsg), flags, body]));
}

/** The command of an OP_MSG body: its kind-0 document, with kind-1 document sequences added as arrays. */
function opMsgCommand(message: Buffer): Document {
  const flags = message.readUInt32LE(16);
  const end = message.length - (flags & 1 ? 4 : 0);
  let command: Document = {};
  for (let at = 20; at < end; ) {
    const kind = message[at]!;
    at += 1;
    if (kind === 0) {
      const size = message.readInt32LE(at);
      command = { ...BSON.deserialize(message.subarray(at, at + size)), ...command };
      at += size;
    } else {
      const size = message.readInt32LE(at);
      const sectionEnd = at + size;
      const nameEnd = message.indexOf(0, at + 4);
      const name = message.toString('utf8', at + 4, nameEnd);
      const docs: Document[] = [];
      for (let d = nameEnd + 1; d < sectionEnd; ) {
        const docSize = message.readInt32LE(d);
        docs.push(BSON.deserialize(message.subarray(d, d + docSize)));
        d += docSize;
      }
      command[name] = docs;
      at = sectionEnd;
    }
  }
  return command;
}

export async function startMongoStandIn(): Promise<MongoStandIn> {
  const sockets = new Set<Socket>();
  const standIn: MongoStandIn = { url: '', commands: [], hang: false, close: async () => undefined };
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4 && pending.length >= pending.readInt32LE(0)) {
        const length = pending.readInt32LE(0);
        const message = pending.subarray(0, length);
        pending = pending.subarray(length);
        const requestId = message.readInt32LE(4);
        const opCode = message.readInt32LE(12);
        if (opCode === opQuery) {
          // flags (4), full collection name (cstring), skip (4), return (4), query
          const nameEnd = message.indexOf(0, 20);
          const at = nameEnd + 1 + 8;
          const query = BSON.deserialize(message.subarray(at, at + message.readInt32LE(at)));
          replyOpQuery(socket, requestId, { ...helloReply(), ...(query.hello || query.isMaster || query.ismaster ? {} : { ok: 1 }) });
        } else if (opCode === opMsg) {
          const command = opMsgCommand(message);
          const name = Object.keys(command)[0]!;
          if (name === 'hello' || name === 'isMaster' || name === 'ismaster') {
            replyOpMsg(socket, requestId, helloReply());
            continue;
          }
          standIn.commands.push(command);
          if (!standIn.hang) replyOpMsg(socket, requestId, answer(command));
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  standIn.url = `mongodb://127.0.0.1:${port}/?directConnection=true`;
  standIn.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return standIn;
}
