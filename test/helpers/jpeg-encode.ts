/**
 * A minimal baseline JPEG encoder (YCbCr 4:4:4, one quantisation table, flat Huffman tables)
 * for synthetic test images: nothing in node_modules writes JPEG, and test datasets should look
 * like real ones (most real YOLO datasets are JPEG). Flat Huffman codes (every AC symbol 8 bits,
 * every DC category 4 bits) are valid JPEG, only a little larger than optimal, and avoid
 * copying the long standard tables by hand.
 */

const ZIGZAG: number[] = (() => {
  const order: number[] = [];
  for (let s = 0; s < 15; s++) {
    const cells: number[] = [];
    for (let row = 0; row < 8; row++) {
      const col = s - row;
      if (col >= 0 && col < 8) cells.push(row * 8 + col);
    }
    // Even diagonals run bottom-left → top-right (row decreasing), odd ones the other way.
    order.push(...(s % 2 === 0 ? cells.reverse() : cells));
  }
  return order;
})();

const BASE_Q = [
  16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51,
  87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101,
  72, 92, 95, 98, 112, 100, 103, 99,
];

const COS: Float64Array = (() => {
  const t = new Float64Array(64);
  for (let x = 0; x < 8; x++) for (let u = 0; u < 8; u++) t[x * 8 + u] = Math.cos(((2 * x + 1) * u * Math.PI) / 16);
  return t;
})();

// Flat Huffman tables: AC symbols EOB, ZRL, then (run<<4|size) for run 0..15, size 1..10.
const AC_SYMBOLS: number[] = [0x00, 0xf0];
for (let run = 0; run < 16; run++) for (let size = 1; size <= 10; size++) AC_SYMBOLS.push((run << 4) | size);
const AC_CODE = new Int16Array(256).fill(-1); // 8-bit codes 0..161
AC_SYMBOLS.forEach((s, i) => (AC_CODE[s] = i));
const DC_SYMBOLS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]; // 4-bit codes 0..11

class BitWriter {
  private buf = Buffer.allocUnsafe(4096);
  private len = 0;
  private acc = 0; // pending bits, at most 7 + 16 at a time
  private n = 0;
  write(value: number, bits: number): void {
    this.acc = (this.acc << bits) | (value & ((1 << bits) - 1));
    this.n += bits;
    while (this.n >= 8) {
      this.n -= 8;
      this.push((this.acc >>> this.n) & 0xff);
    }
    this.acc &= (1 << this.n) - 1;
  }
  private push(byte: number): void {
    if (this.len + 2 > this.buf.length) {
      const bigger = Buffer.allocUnsafe(this.buf.length * 2);
      this.buf.copy(bigger, 0, 0, this.len);
      this.buf = bigger;
    }
    this.buf[this.len++] = byte;
    if (byte === 0xff) this.buf[this.len++] = 0; // byte stuffing
  }
  end(): Buffer {
    if (this.n > 0) this.write((1 << (8 - this.n)) - 1, 8 - this.n); // pad with 1-bits
    return this.buf.subarray(0, this.len);
  }
}

function category(v: number): number {
  let a = Math.abs(v), c = 0;
  while (a > 0) { c++; a >>= 1; }
  return c;
}

function writeValue(w: BitWriter, v: number, cat: number): void {
  if (cat === 0) return;
  w.write(v < 0 ? v + (1 << cat) - 1 : v, cat);
}

const tmp = new Float64Array(64);
function encodeBlock(w: BitWriter, block: Float64Array, q: number[], prevDc: number): number {
  const coef = new Int32Array(64);
  // Separable DCT: rows, then columns (1,024 multiplies per block instead of 4,096).
  for (let y = 0; y < 8; y++) {
    for (let u = 0; u < 8; u++) {
      let s = 0;
      for (let x = 0; x < 8; x++) s += block[y * 8 + x]! * COS[x * 8 + u]!;
      tmp[y * 8 + u] = s * (u === 0 ? Math.SQRT1_2 : 1);
    }
  }
  for (let u = 0; u < 8; u++) {
    for (let v = 0; v < 8; v++) {
      let s = 0;
      for (let y = 0; y < 8; y++) s += tmp[y * 8 + u]! * COS[y * 8 + v]!;
      coef[v * 8 + u] = Math.round((0.25 * (v === 0 ? Math.SQRT1_2 : 1) * s) / q[v * 8 + u]!);
    }
  }
  const dc = coef[0]!;
  const diff = dc - prevDc;
  const dcCat = category(diff);
  w.write(dcCat, 4);
  writeValue(w, diff, dcCat);
  let run = 0;
  for (let k = 1; k < 64; k++) {
    const c = coef[ZIGZAG[k]!]!;
    if (c === 0) { run++; continue; }
    while (run > 15) { w.write(AC_CODE[0xf0]!, 8); run -= 16; }
    const cat = Math.min(category(c), 10);
    w.write(AC_CODE[(run << 4) | cat]!, 8);
    writeValue(w, c, cat);
    run = 0;
  }
  if (run > 0) w.write(AC_CODE[0x00]!, 8);
  return dc;
}

function segment(marker: number, body: number[]): number[] {
  const len = body.length + 2;
  return [0xff, marker, len >> 8, len & 0xff, ...body];
}

/** Encodes packed RGB (3 bytes per pixel) as a baseline JPEG. */
export function encodeJpeg(rgb: Buffer, width: number, height: number, quality = 90): Buffer {
  const scale = quality < 50 ? 5000 / quality : 200 - 2 * quality;
  const q = BASE_Q.map((v) => Math.min(255, Math.max(1, Math.floor((v * scale + 50) / 100))));
  const planes = [new Float64Array(width * height), new Float64Array(width * height), new Float64Array(width * height)];
  for (let i = 0; i < width * height; i++) {
    const r = rgb[i * 3]!, g = rgb[i * 3 + 1]!, b = rgb[i * 3 + 2]!;
    planes[0]![i] = 0.299 * r + 0.587 * g + 0.114 * b - 128;
    planes[1]![i] = -0.168736 * r - 0.331264 * g + 0.5 * b;
    planes[2]![i] = 0.5 * r - 0.418688 * g - 0.081312 * b;
  }
  const w = new BitWriter();
  const prev = [0, 0, 0];
  const block = new Float64Array(64);
  for (let by = 0; by < height; by += 8) {
    for (let bx = 0; bx < width; bx += 8) {
      for (let c = 0; c < 3; c++) {
        const p = planes[c]!;
        for (let y = 0; y < 8; y++) {
          const sy = Math.min(by + y, height - 1); // edge replication for partial blocks
          for (let x = 0; x < 8; x++) block[y * 8 + x] = p[sy * width + Math.min(bx + x, width - 1)]!;
        }
        prev[c] = encodeBlock(w, block, q, prev[c]!);
      }
    }
  }
  const scan = w.end();
  const dhtDc = [0x00, ...Array.from({ length: 16 }, (_, i) => (i === 3 ? DC_SYMBOLS.length : 0)), ...DC_SYMBOLS];
  const dhtAc = [0x10, ...Array.from({ length: 16 }, (_, i) => (i === 7 ? AC_SYMBOLS.length : 0)), ...AC_SYMBOLS];
  const head = [
    0xff, 0xd8,
    ...segment(0xe0, [0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]),
    ...segment(0xdb, [0x00, ...ZIGZAG.map((i) => q[i]!)]),
    ...segment(0xc0, [8, height >> 8, height & 0xff, width >> 8, width & 0xff, 3, 1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0]),
    ...segment(0xc4, [...dhtDc, ...dhtAc]),
    ...segment(0xda, [3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0]),
  ];
  return Buffer.concat([Buffer.from(head), scan, Buffer.from([0xff, 0xd9])]);
}
