import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { area, decodeCounts, decodeMask, encodeCounts, encodeMask, maskBbox, RleError, runsOf } from './rle.js';

// Reference values written by pycocotools 2.0 (mask.encode, toBbox, area) for the same masks.
const BLOB = {
  size: [7, 9] as [number, number],
  counts: [23, 3, 4, 3, 4, 3, 4, 3, 15, 1],
  string: 'g03400000;N',
  bbox: [3, 2, 6, 5],
  area: 13,
};
const RANDOM_40x30 =
  '011030200000N021NOM0013O01MO00016O00M1NO50J020N1d00\\O05O20I21O3OM51KO032NO3OK01010O010O3;ME020N00061KO30N2MO0O312OL001208OF00051K0OO1171HN80H030N0202030J011MO0020N0624NI21N10M0O1003O00M31M10N021OO1000N1O11O3O10M001224MH11O40L060K0N011O00O20O23NM0O10O10O0113O0051H0O01O10O10O31MOO03010L020O10OO0000050K08090A2NN00012ON20N10O010O030M41L31LO410ON0O0O0:0F041LO43LM000021OO20M00030O0O100OO0000041L30N1O05O20J00010O0N00010O14OL01080I00040J0:1JOL15O40I020N0O0O00020O1OO10O050L033MN1O21NOO1OO50L3ON20NO;';
const RECT_300x200 = `Rm5X6T3${'0'.repeat(317)}ni5`;

describe('COCO RLE', () => {
  test('the compressed string decodes to the runs pycocotools wrote, and encodes back', () => {
    assert.deepEqual(decodeCounts(BLOB.string), BLOB.counts);
    assert.equal(encodeCounts(BLOB.counts), BLOB.string);
    for (const s of [RANDOM_40x30, RECT_300x200, '0i0', 'h0']) assert.equal(encodeCounts(decodeCounts(s)), s);
  });

  test('a mask is encoded column by column, starting with background', () => {
    const mask = new Uint8Array(7 * 9);
    for (let y = 2; y < 5; y++) for (let x = 3; x < 7; x++) mask[y * 9 + x] = 1;
    mask[6 * 9 + 8] = 1;
    assert.deepEqual(encodeMask(mask, 7, 9), BLOB.counts);
    assert.deepEqual(decodeMask({ size: BLOB.size, counts: BLOB.string }), mask);
    // A mask whose first pixel is set starts with an empty background run.
    assert.deepEqual(encodeMask(new Uint8Array(25).fill(1), 5, 5), [0, 25]);
  });

  test('bbox [x, y, w, h] and area match pycocotools, from either counts form', () => {
    assert.deepEqual(maskBbox({ size: BLOB.size, counts: BLOB.counts }), BLOB.bbox);
    assert.deepEqual(maskBbox({ size: BLOB.size, counts: BLOB.string }), BLOB.bbox);
    assert.equal(area({ size: BLOB.size, counts: BLOB.string }), BLOB.area);
    assert.deepEqual(maskBbox({ size: [300, 200], counts: RECT_300x200 }), [20, 50, 160, 200]);
    assert.equal(area({ size: [300, 200], counts: RECT_300x200 }), 32000);
    assert.deepEqual(maskBbox({ size: [40, 30], counts: RANDOM_40x30 }), [0, 0, 30, 40]);
    assert.equal(area({ size: [40, 30], counts: RANDOM_40x30 }), 351);
    assert.equal(maskBbox({ size: [6, 4], counts: 'h0' }), null);
  });

  test('a run crossing into the next column spans every row of the box', () => {
    // 4x3: column 0 rows 2-3, column 1 rows 0-1 set: one run of 4 from pixel 2.
    assert.deepEqual(maskBbox({ size: [4, 3], counts: [2, 4, 6] }), [0, 0, 2, 4]);
  });

  test('runs that do not cover the image, or broken strings, are refused', () => {
    assert.throws(() => runsOf({ size: [7, 9], counts: [23, 3] }), (e: unknown) => e instanceof RleError && /cover 26 pixels/.test(e.message));
    assert.throws(() => runsOf({ size: [7, 9], counts: [-1, 64] }), RleError);
    assert.throws(() => runsOf({ size: [0, 9], counts: [0] }), /size must be two positive integers/);
    assert.throws(() => decodeCounts('g'), /ends inside a value/);
    assert.throws(() => decodeCounts('0 1'), /not part of a COCO counts string/);
  });
});
