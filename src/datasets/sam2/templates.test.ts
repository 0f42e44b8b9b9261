import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { frameSamples, plural, type FrameObject } from './templates.js';

const car1: FrameObject = { objectId: '1', label: 'car', box: [10, 10, 30, 20] };
const car2: FrameObject = { objectId: '2', label: 'car', box: [50, 40, 70, 60] };
const bus: FrameObject = { objectId: '3', label: 'bus', box: [0, 0, 20, 20] };

describe('instruction templates', () => {
  test('objects, boxes and counts of a frame', () => {
    const samples = frameSamples({ objects: [car2, bus, car1], width: 100, height: 80, previous: null, videoClasses: ['bus', 'car', 'person'] });
    const by = (t: string) => samples.filter((s) => s.template === t);
    assert.equal(by('objects')[0]!.completion, 'The image shows 1 bus and 2 cars.');
    assert.deepEqual(by('objects')[0]!.classes, ['bus', 'car']);
    const locate = by('locate');
    assert.equal(locate.length, 2);
    assert.match(locate[0]!.prompt, /^Where is the bus in this image\? .*100x80 image\.$/);
    assert.equal(locate[0]!.completion, 'The bus is at [0, 0, 20, 20].');
    assert.match(locate[1]!.prompt, /^Where are the cars/);
    assert.equal(locate[1]!.completion, 'There are 2 cars, at [10, 10, 30, 20] and [50, 40, 70, 60].');
    assert.deepEqual(by('count').map((s) => s.completion), ['There is 1 bus.', 'There are 2 cars.', 'There are no persons.']);
    assert.deepEqual(by('count')[2]!.classes, []);
    assert.equal(by('changes').length, 0, 'the first frame of a video has nothing to compare with');
  });

  test('changes since the previous frame: appeared, moved, left', () => {
    const moved: FrameObject = { ...car1, box: [40, 10, 60, 20] };
    const [s] = frameSamples({ objects: [moved, bus], width: 100, height: 80, previous: [car1, car2], videoClasses: ['bus', 'car'] }, ['changes']);
    assert.equal(s!.prompt, 'In the previous frame the objects were: car 1 at [10, 10, 30, 20]; car 2 at [50, 40, 70, 60]. What changed in this frame?');
    assert.equal(s!.completion, 'Bus 3 appeared at [0, 0, 20, 20]; car 1 moved right to [40, 10, 60, 20]; car 2 left the image.');
    const [still] = frameSamples({ objects: [car1], width: 100, height: 80, previous: [{ ...car1, box: [11, 10, 31, 20] }], videoClasses: ['car'] }, ['changes']);
    assert.match(still!.completion, /^Nothing changed/);
  });

  test('an empty frame says so; plurals', () => {
    const [s] = frameSamples({ objects: [], width: 10, height: 10, previous: null, videoClasses: [] }, ['objects']);
    assert.equal(s!.completion, 'There are no annotated objects in this image.');
    assert.deepEqual(['box', 'bus', 'puppy', 'toy', 'car'].map((l) => plural(l, 2)), ['boxes', 'buses', 'puppies', 'toys', 'cars']);
  });
});
