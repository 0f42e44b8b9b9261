import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkLabelText, type KptShape, type LabelTask } from './labels.js';

/** Runs the checker on lines; returns per-line messages ("line: message"), counts and the result. */
function run(lines: string[], task: LabelTask, nc: number, kpt?: KptShape) {
  const counts = new Array<number>(nc).fill(0);
  const problems: string[] = [];
  const r = checkLabelText(lines.join('\n'), task, nc, counts, (l, m) => problems.push(`${l}: ${m}`), kpt);
  return { ...r, problems, counts };
}

describe('checkLabelText: pose', () => {
  const box = '0 0.5 0.5 0.4 0.4';

  it('accepts cls + box + K keypoints of x y visibility, and of x y', () => {
    const three = run([`${box} 0.5 0.3 2 0.7 0.5 1 0.5 0.7 0 0 0 0`, `1 0.2 0.2 0.1 0.1 ${'0.2 0.2 2 '.repeat(4).trim()}`], 'pose', 2, [4, 3]);
    assert.deepEqual(three.problems, []);
    assert.deepEqual(three.counts, [1, 1]);
    const two = run([`${box} 0.5 0.3 0.7 0.5 0.5 0.7 0.3 0.5`], 'pose', 1, [4, 2]);
    assert.deepEqual(two.problems, []);
    assert.equal(two.instances, 1);
  });

  it('accepts visibility written as a float and coordinates within the 1% tolerance', () => {
    const r = run([`${box} 1.005 -0.005 2.0 0.5 0.5 1.0 0.5 0.5 0.0 0.5 0.5 2`], 'pose', 1, [4, 3]);
    assert.deepEqual(r.problems, []);
  });

  it('wants exactly 5 + K*D values', () => {
    const r = run([box, `${box} 0.5 0.3 2 0.7 0.5 1`, `${box} ${'0.5 0.5 2 '.repeat(5).trim()}`], 'pose', 1, [4, 3]);
    assert.deepEqual(r.problems, [
      "1: this line is a box without keypoints; expected 17 values (cls cx cy w h, then 4 keypoints of 3 values (x y visibility), as data.yaml's kpt_shape [4, 3] says)",
      "2: expected 17 values (cls cx cy w h, then 4 keypoints of 3 values (x y visibility), as data.yaml's kpt_shape [4, 3] says), got 11",
      "3: expected 17 values (cls cx cy w h, then 4 keypoints of 3 values (x y visibility), as data.yaml's kpt_shape [4, 3] says), got 20",
    ]);
    // D = 2: a line written with visibility has the wrong count.
    const two = run([`${box} 0.5 0.3 2 0.7 0.5 2`], 'pose', 1, [2, 2]);
    assert.match(two.problems[0]!, /expected 9 values .*2 keypoints of 2 values \(x y\).*got 11/);
    assert.equal(two.instances, 0);
  });

  it('refuses a visibility other than 0, 1 or 2, naming the keypoint', () => {
    const r = run([`${box} 0.5 0.3 2 0.7 0.5 0.5 0.5 0.7 2 0.3 0.5 2`, `${box} 0.5 0.3 2 0.7 0.5 2 0.5 0.7 2 0.3 0.5 3`, `${box} 0.5 0.3 -1 0.7 0.5 2 0.5 0.7 2 0.3 0.5 2`], 'pose', 1, [4, 3]);
    assert.deepEqual(r.problems, [
      '1: keypoint 2 visibility "0.5" (value 11) must be 0, 1 or 2 (not labelled, labelled but hidden, visible)',
      '2: keypoint 4 visibility "3" (value 17) must be 0, 1 or 2 (not labelled, labelled but hidden, visible)',
      '3: keypoint 1 visibility "-1" (value 8) must be 0, 1 or 2 (not labelled, labelled but hidden, visible)',
    ]);
  });

  it('refuses keypoint and box coordinates outside [0, 1], bad classes and non-numbers', () => {
    const r = run(
      [
        `${box} 0.5 1.2 2 0.7 0.5 2`, // keypoint y
        `0 0.5 0.5 1.4 0.4 0.5 0.5 2 0.7 0.5 2`, // box width (Ultralytics does not check the box upper bound for pose)
        `0 0.5 0.5 0.4 0.4 0.5 0.5 2 640 480 2`, // pixel coordinates
        `2 0.5 0.5 0.4 0.4 0.5 0.5 2 0.7 0.5 2`, // class out of range
        `0 0.5 0.5 0.4 0.4 0.5 nan 2 0.7 0.5 2`,
      ],
      'pose',
      2,
      [2, 3],
    );
    assert.deepEqual(
      r.problems.map((p) => p.replace(/ is outside.*| is out of range.*| is not a finite.*/, '')),
      ['1: coordinate 1.2 (value 7)', '2: coordinate 1.4 (value 4)', '3: coordinate 640 (value 9)', '4: class 2', '5: value 7 "nan"'],
    );
  });

  it('counts duplicate rows', () => {
    const line = `${box} 0.5 0.3 0.7 0.5`;
    assert.equal(run([line, line], 'pose', 1, [2, 2]).duplicates, 1);
  });

  it('needs kpt_shape', () => {
    assert.throws(() => checkLabelText(box, 'pose', 1, [0], () => {}), /needs kpt_shape/);
  });
});

describe('checkLabelText: obb', () => {
  it('accepts cls and 4 corners, also with corners a rotated box pushes past the border', () => {
    const r = run(['0 0.1 0.1 0.4 0.1 0.4 0.3 0.1 0.3', '1 0.411096 0.133518 0.522727 0.581718 0.328615 0.630065 0.216983 0.181865', '1 -0.05 0.5 0.2 0.3 0.45 0.5 0.2 0.7'], 'obb', 2);
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.counts, [1, 2]);
  });

  it('wants exactly 9 values', () => {
    const r = run(['0 0.5 0.5 0.2 0.2', '0 0.1 0.1 0.4 0.1 0.4 0.3', '0 0.1 0.1 0.4 0.1 0.4 0.3 0.1 0.3 0.2 0.2'], 'obb', 1);
    assert.deepEqual(r.problems, [
      '1: an obb dataset needs the 4 corners (cls x1 y1 x2 y2 x3 y3 x4 y4); this line is an axis-aligned box (cls cx cy w h)',
      '2: expected 9 values (cls x1 y1 x2 y2 x3 y3 x4 y4: the 4 corners of the rotated box), got 7',
      '3: expected 9 values (cls x1 y1 x2 y2 x3 y3 x4 y4: the 4 corners of the rotated box), got 11',
    ]);
  });

  it('refuses corners whose surrounding box is not normalized, as Ultralytics does', () => {
    const r = run(
      [
        '0 0.9 0.1 1.3 0.1 1.3 0.3 0.9 0.3', // centre x 1.1
        '0 10 10 400 10 400 300 10 300', // pixels
        '0 -0.9 0.1 0.9 0.1 0.9 0.3 -0.9 0.3', // centre 0, width 1.8
        '0 0.1 0.1 0.4 0.1 0.4 inf 0.1 0.3',
        '3 0.1 0.1 0.4 0.1 0.4 0.3 0.1 0.3',
      ],
      'obb',
      2,
    );
    assert.deepEqual(r.problems, [
      '1: corners span x 0.9..1.3, y 0.1..0.3: not normalized to the image size (the box around them needs its centre and size within [0, 1])',
      '2: corners span x 10..400, y 10..300: not normalized to the image size (the box around them needs its centre and size within [0, 1])',
      '3: corners span x -0.9..0.9, y 0.1..0.3: not normalized to the image size (the box around them needs its centre and size within [0, 1])',
      '4: value 7 "inf" is not a finite number',
      '5: class 3 is out of range (data.yaml has 2 classes: 0..1)',
    ]);
  });
});

describe('checkLabelText: detect and segment keep their rules', () => {
  it('a pose-shaped line is a polygon for detect, and 9 values are a polygon for segment', () => {
    assert.deepEqual(run(['0 0.1 0.1 0.4 0.1 0.4 0.3 0.1 0.3'], 'detect', 1).problems, []);
    assert.deepEqual(run(['0 0.1 0.1 0.4 0.1 0.4 0.3 0.1 0.3'], 'segment', 1).problems, []);
    assert.match(run(['0 0.5 0.5 0.2 0.2'], 'segment', 1).problems[0]!, /this line is a box/);
  });
});
