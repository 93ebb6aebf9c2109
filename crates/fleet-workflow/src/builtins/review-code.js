export const meta = {
  name: 'review-code',
  title: 'Review code',
  description:
    'Reviews code from several angles at once: scope, parallel finders per angle, one verifier per finding, ranked synthesis.',
  whenToUse: 'Before merging a change, or to audit a directory.',
  phases: [
    { title: 'Scope', detail: 'decide what to review and from which angles' },
    { title: 'Find', detail: 'one finder per angle' },
    { title: 'Verify', detail: 'one verifier per finding' },
    { title: 'Rank', detail: 'order what held by severity' },
  ],
};

// args: { path?: string (default '.'), angles?: string[], diff?: string }
const path = (args && typeof args.path === 'string') ? args.path : '.';
const diff = (args && typeof args.diff === 'string') ? args.diff : '';
const target = diff ? `this diff:\n<<<\n${diff}\n>>>` : `the code under ${path}`;

phase('Scope');
let angles = (args && Array.isArray(args.angles)) ? args.angles.map(String) : null;
if (!angles) {
  const scope = await agent(
    `Decide how to review ${target}. Name up to 4 review angles (e.g. correctness, security, error handling, performance).`,
    {
      label: 'scope the review',
      capabilities: ['read_files'],
      schema: {
        type: 'object',
        properties: { angles: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1, maxItems: 4 } },
        required: ['angles'],
      },
    });
  angles = (scope && scope.angles && scope.angles.length) ? scope.angles : ['correctness', 'security'];
}

const finding = {
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

phase('Find');
const found = await parallel(angles.map((angle) => () => agent(
  `Review ${target} strictly from the angle of ${angle}. Report concrete problems with file and line; no style nits.`,
  {
    label: `find: ${angle}`.slice(0, 60),
    capabilities: ['read_files'],
    schema: {
      type: 'object',
      properties: { findings: { type: 'array', items: finding, maxItems: 6 } },
      required: ['findings'],
    },
  })));
const candidates = found.flatMap((f, i) => (f && f.findings ? f.findings.map((x) => ({ ...x, angle: angles[i] })) : []));
log(`${candidates.length} candidate findings from ${angles.length} angles`);

phase('Verify');
const checks = await parallel(candidates.map((c, i) => () => agent(
  `Check whether this review finding is real. Read the code; reject it if it is wrong or harmless.\n${JSON.stringify(c)}`,
  {
    label: `verify ${i + 1}: ${c.title}`.slice(0, 60),
    capabilities: ['read_files'],
    schema: {
      type: 'object',
      properties: { real: { type: 'boolean' }, reason: { type: 'string' } },
      required: ['real', 'reason'],
    },
  })));
const confirmed = candidates
  .map((c, i) => ({ ...c, confirmed: !!(checks[i] && checks[i].real), reason: checks[i] ? checks[i].reason : 'not verified' }))
  .filter((c) => c.confirmed);

phase('Rank');
const order = { critical: 0, high: 1, medium: 2, low: 3 };
confirmed.sort((a, b) => (order[a.severity] ?? 4) - (order[b.severity] ?? 4) || String(a.file).localeCompare(String(b.file)));
const summary = await agent(
  `Summarize this code review for the author in a few sentences, most severe first.\n${JSON.stringify(confirmed, null, 1)}`,
  { label: 'summarize the review', schema: { type: 'object', properties: { summary: { type: 'string' } }, required: ['summary'] } });

return {
  path,
  angles,
  findings: confirmed,
  rejected: candidates.length - confirmed.length,
  summary: summary ? summary.summary : null,
};
