/**
 * Instruction samples from one annotated frame: questions a vision-language model should answer
 * from the image alone, with answers written from the annotations.
 *
 *   objects   which objects the frame shows, counted per class
 *   locate    where each class is: boxes in text, [x_min, y_min, x_max, y_max] in pixels
 *   count     how many of each class the video holds there are in this frame (0 included, so
 *             the model also learns to say "none")
 *   changes   what changed since the previous annotated frame of the video; the question
 *             states that frame's objects, so the sample is answerable from this image
 *
 * Answers are deterministic (objects sorted by class, then by position) so the same export
 * gives the same dataset bytes.
 */

export const TEMPLATES = ['objects', 'locate', 'count', 'changes'] as const;
export type Template = (typeof TEMPLATES)[number];

/** An annotated object of a frame, its box in whole pixels, corners inclusive-exclusive. */
export type FrameObject = { objectId: string; label: string; box: [number, number, number, number] };

export type Sample = { template: Template; prompt: string; completion: string; classes: string[] };

export function plural(label: string, n: number): string {
  if (n === 1) return label;
  if (/(s|x|z|ch|sh)$/i.test(label)) return `${label}es`;
  if (/[^aeiou]y$/i.test(label)) return `${label.slice(0, -1)}ies`;
  return `${label}s`;
}

const countOf = (label: string, n: number) => `${n} ${plural(label, n)}`;
const boxText = (b: FrameObject['box']) => `[${b.join(', ')}]`;

function list(parts: string[]): string {
  if (parts.length <= 1) return parts.join('');
  return `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}`;
}

function byLabel(objects: readonly FrameObject[]): Map<string, FrameObject[]> {
  const sorted = [...objects].sort((a, b) => a.label.localeCompare(b.label) || a.box[0] - b.box[0] || a.box[1] - b.box[1] || a.objectId.localeCompare(b.objectId));
  const out = new Map<string, FrameObject[]>();
  for (const o of sorted) out.set(o.label, [...(out.get(o.label) ?? []), o]);
  return out;
}

function objectsSample(objects: readonly FrameObject[]): Sample {
  const groups = byLabel(objects);
  const completion = groups.size
    ? `The image shows ${list([...groups].map(([label, os]) => countOf(label, os.length)))}.`
    : 'There are no annotated objects in this image.';
  return { template: 'objects', prompt: 'Which objects are in this image?', completion, classes: [...groups.keys()] };
}

function locateSamples(objects: readonly FrameObject[], width: number, height: number): Sample[] {
  return [...byLabel(objects)].map(([label, os]) => ({
    template: 'locate' as const,
    prompt: `Where ${os.length === 1 ? `is the ${label}` : `are the ${plural(label, 2)}`} in this image? Answer with boxes [x_min, y_min, x_max, y_max] in pixels of the ${width}x${height} image.`,
    completion:
      os.length === 1
        ? `The ${label} is at ${boxText(os[0]!.box)}.`
        : `There are ${countOf(label, os.length)}, at ${list(os.map((o) => boxText(o.box)))}.`,
    classes: [label],
  }));
}

function countSamples(objects: readonly FrameObject[], videoClasses: readonly string[]): Sample[] {
  const groups = byLabel(objects);
  return videoClasses.map((label) => {
    const n = groups.get(label)?.length ?? 0;
    return {
      template: 'count' as const,
      prompt: `How many ${plural(label, 2)} are in this image?`,
      completion: n === 0 ? `There are no ${plural(label, 2)}.` : n === 1 ? `There is 1 ${label}.` : `There are ${countOf(label, n)}.`,
      classes: n ? [label] : [],
    };
  });
}

/** Which way an object moved, when its box centre moved by more than a twentieth of the image. */
function movement(before: FrameObject['box'], after: FrameObject['box'], width: number, height: number): string | null {
  const dx = (after[0] + after[2] - before[0] - before[2]) / 2;
  const dy = (after[1] + after[3] - before[1] - before[3]) / 2;
  const parts: string[] = [];
  if (Math.abs(dx) > width / 20) parts.push(dx > 0 ? 'right' : 'left');
  if (Math.abs(dy) > height / 20) parts.push(dy > 0 ? 'down' : 'up');
  return parts.length ? parts.join(' and ') : null;
}

function changesSample(objects: readonly FrameObject[], previous: readonly FrameObject[], width: number, height: number): Sample {
  const name = (o: FrameObject) => `${o.label} ${o.objectId}`;
  const before = new Map(previous.map((o) => [o.objectId, o]));
  const now = new Map(objects.map((o) => [o.objectId, o]));
  const stated = previous.length
    ? [...byLabel(previous).values()].flat().map((o) => `${name(o)} at ${boxText(o.box)}`).join('; ')
    : 'no objects';
  const changes: string[] = [];
  for (const o of [...byLabel(objects).values()].flat()) {
    const was = before.get(o.objectId);
    if (!was) changes.push(`${name(o)} appeared at ${boxText(o.box)}`);
    else {
      const moved = movement(was.box, o.box, width, height);
      if (moved) changes.push(`${name(o)} moved ${moved} to ${boxText(o.box)}`);
    }
  }
  for (const o of [...byLabel(previous).values()].flat()) if (!now.has(o.objectId)) changes.push(`${name(o)} left the image`);
  return {
    template: 'changes',
    prompt: `In the previous frame the objects were: ${stated}. What changed in this frame?`,
    completion: changes.length ? `${changes.join('; ')}.`.replace(/^./, (c) => c.toUpperCase()) : 'Nothing changed: the same objects are in about the same places.',
    classes: [...new Set([...objects, ...previous].map((o) => o.label))].sort(),
  };
}

/**
 * The samples of one frame. `previous` is the video's previous annotated frame (null for its
 * first: no change sample), `videoClasses` every class the video holds.
 */
export function frameSamples(
  frame: { objects: readonly FrameObject[]; width: number; height: number; previous: readonly FrameObject[] | null; videoClasses: readonly string[] },
  templates: readonly Template[] = TEMPLATES,
): Sample[] {
  const out: Sample[] = [];
  for (const t of templates) {
    if (t === 'objects') out.push(objectsSample(frame.objects));
    else if (t === 'locate') out.push(...locateSamples(frame.objects, frame.width, frame.height));
    else if (t === 'count') out.push(...countSamples(frame.objects, frame.videoClasses));
    else if (frame.previous) out.push(changesSample(frame.objects, frame.previous, frame.width, frame.height));
  }
  return out;
}
