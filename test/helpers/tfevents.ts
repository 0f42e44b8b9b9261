/**
 * Reads TensorBoard events files without TensorBoard: the TFRecord framing (length, masked
 * CRC-32C of the length, data, masked CRC-32C of the data; both checked) and the few protobuf
 * fields a scalar needs (Event.step = 2, Event.summary = 5 → Summary.value = 1 → Value.tag = 1,
 * Value.simple_value = 2; Event.session_log = 7 → SessionLog.status = 1, START = 1).
 *
 * `readScalars` applies TensorBoard's purge rule across the files of a run, oldest first: a
 * session START at step P drops the earlier files' events at step ≥ P (what a resumed writer
 * with purge_step asks for).
 */
import fs from 'node:fs';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

function crc32c(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const masked = (crc: number) => (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;

/** The records of a TFRecord file, each CRC checked. */
export function tfRecords(file: string): Buffer[] {
  const buf = fs.readFileSync(file);
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    if (at + 12 > buf.length) throw new Error(`${file}: truncated record header at byte ${at}`);
    const header = buf.subarray(at, at + 8);
    const length = Number(buf.readBigUInt64LE(at));
    if (buf.readUInt32LE(at + 8) !== masked(crc32c(header))) throw new Error(`${file}: bad length CRC at byte ${at}`);
    const data = buf.subarray(at + 12, at + 12 + length);
    if (data.length !== length || at + 16 + length > buf.length) throw new Error(`${file}: truncated record at byte ${at}`);
    if (buf.readUInt32LE(at + 12 + length) !== masked(crc32c(data))) throw new Error(`${file}: bad data CRC at byte ${at}`);
    out.push(data);
    at += 16 + length;
  }
  return out;
}

type Field = { no: number; wire: number; value: number | Buffer };

function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let at = 0;
  const varint = () => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = buf[at++]!;
      v += (b & 0x7f) * mul;
      if (!(b & 0x80)) return v;
      mul *= 128;
    }
  };
  while (at < buf.length) {
    const key = varint();
    const no = Math.floor(key / 8);
    const wire = key & 7;
    if (wire === 0) out.push({ no, wire, value: varint() });
    else if (wire === 1) {
      out.push({ no, wire, value: buf.readDoubleLE(at) });
      at += 8;
    } else if (wire === 2) {
      const n = varint();
      out.push({ no, wire, value: buf.subarray(at, at + n) });
      at += n;
    } else if (wire === 5) {
      out.push({ no, wire, value: buf.readFloatLE(at) });
      at += 4;
    } else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
  return out;
}

export interface TfEvent {
  step: number;
  scalars: { tag: string; value: number }[];
  /** A session START (a writer opened with purge_step). */
  start: boolean;
}

export function tfEvents(file: string): TfEvent[] {
  return tfRecords(file).map((record) => {
    const event: TfEvent = { step: 0, scalars: [], start: false };
    for (const f of fields(record)) {
      if (f.no === 2 && f.wire === 0) event.step = f.value as number;
      if (f.no === 5 && f.wire === 2) {
        for (const v of fields(f.value as Buffer)) {
          if (v.no !== 1 || v.wire !== 2) continue;
          const parts = fields(v.value as Buffer);
          const tag = parts.find((p) => p.no === 1 && p.wire === 2)?.value as Buffer | undefined;
          const value = parts.find((p) => p.no === 2 && p.wire === 5)?.value as number | undefined;
          if (tag && value !== undefined) event.scalars.push({ tag: tag.toString('utf8'), value });
        }
      }
      if (f.no === 7 && f.wire === 2) event.start = fields(f.value as Buffer).some((p) => p.no === 1 && p.value === 1);
    }
    return event;
  });
}

/** tag → [step, value][] over the run's events files (oldest first), purged as TensorBoard does. */
export function readScalars(files: readonly string[]): Map<string, [number, number][]> {
  let kept: { step: number; tag: string; value: number }[] = [];
  for (const file of files) {
    for (const e of tfEvents(file)) {
      if (e.start && e.step > 0) kept = kept.filter((k) => k.step < e.step);
      for (const s of e.scalars) kept.push({ step: e.step, ...s });
    }
  }
  const out = new Map<string, [number, number][]>();
  for (const k of kept) {
    if (!out.has(k.tag)) out.set(k.tag, []);
    out.get(k.tag)!.push([k.step, k.value]);
  }
  return out;
}
