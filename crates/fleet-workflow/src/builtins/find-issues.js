export const meta = {
  name: 'find-issues',
  title: 'Find issues',
  description:
    'Scans a source tree in parallel slices for bugs, verifies each candidate, removes duplicates and ranks what is left.',
  whenToUse: 'To sweep a whole repository or directory for defects.',
  phases: [
    { title: 'Slice', detail: 'split the tree into slices' },
    { title: 'Scan', detail: 'one scanner per slice' },
    { title: 'Verify', detail: 'one verifier per candidate' },
    { title: 'Rank', detail: 'deduplicate and order by severity' },
  ],
};

// args: { path?: string (default '.'), slices?: string[], focus?: string }
const path = (args && typeof args.path === 'string') ? args.path : '.';
const focus = (args && typeof args.focus === 'string') ? args.focus : 'bugs that would hurt users';

phase('Slice');
let slices = (args && Array.isArray(args.slices)) ? args.slices.map(String) : null;
if (!slices) {
  const plan = await agent(
    `List the directories or file groups under ${path} to scan in parallel (at most 8 slices covering the code).`,
    {
      label: 'slice the tree',
      capabilities: ['read_files'],
      schema: {
        type: 'object',
        properties: { slices: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1, maxItems: 8 } },
        required: ['slices'],
      },
    });
  slices = (plan && plan.slices && plan.slices.length) ? plan.slices : [path];
}

const issue = {
  type: 'object',
  properties: {
    title: { type: 'string' },
    file: { type: 'string' },
    line: { type: 'integer', minimum: 0 },
    severity: { type: 'string', enum: ['critical', 'high', 'medium', 'low'] },
    detail: { type: 'string' },
  },
  required: ['title', 'file', 'severity', 'detail'],
};

phase('Scan');
const scanned = await parallel(slices.map((slice) => () => agent(
  `Scan ${slice} for ${focus}. Report each with file, line and why it is a problem.`,
  {
    label: `scan ${slice}`.slice(0, 60),
    capabilities: ['read_files'],
    schema: { type: 'object', properties: { issues: { type: 'array', items: issue, maxItems: 6 } }, required: ['issues'] },
  })));
const candidates = scanned.flatMap((s) => (s && s.issues) || []);
log(`${candidates.length} candidates from ${slices.length} slices`);

phase('Verify');
const verdicts = await parallel(candidates.map((c, i) => () => agent(
  `Verify this reported issue by reading the code. Is it real?\n${JSON.stringify(c)}`,
  {
    label: `verify ${i + 1}: ${c.title}`.slice(0, 60),
    capabilities: ['read_files'],
    schema: { type: 'object', properties: { real: { type: 'boolean' }, reason: { type: 'string' } }, required: ['real', 'reason'] },
  })));
const real = candidates.filter((_, i) => verdicts[i] && verdicts[i].real);

phase('Rank');
const seen = new Set();
const unique = real.filter((c) => {
  const key = `${c.file}:${c.line ?? ''}:${String(c.title).toLowerCase()}`;
  if (seen.has(key)) return false;
  seen.add(key);
  return true;
});
const order = { critical: 0, high: 1, medium: 2, low: 3 };
unique.sort((a, b) => (order[a.severity] ?? 4) - (order[b.severity] ?? 4));

return {
  path,
  slices,
  issues: unique,
  candidates: candidates.length,
  duplicates: real.length - unique.length,
};
