export const meta = {
  name: 'deep-research',
  title: 'Deep research',
  description:
    'Answers a question from the sources it is given (files, directories, or text in args): scope, parallel searches, claim extraction, adversarial verification, synthesis. It has no web access and says so in its result.',
  whenToUse: 'A question whose answer is spread over documents you have: docs, notes, a code base.',
  phases: [
    { title: 'Scope', detail: 'turn the question into search queries' },
    { title: 'Search', detail: 'one agent per query reads the sources' },
    { title: 'Extract', detail: 'pull checkable claims out of the notes' },
    { title: 'Verify', detail: 'one skeptic per claim tries to refute it' },
    { title: 'Synthesize', detail: 'answer from the claims that held' },
  ],
};

// args: { question: string, sources?: string[] (files or directories), text?: string }
const question = typeof args === 'string' ? args : args && args.question;
if (typeof question !== 'string' || question.trim() === '') {
  throw new Error(
    'deep-research needs a question: --args \'{"question": "…", "sources": ["docs/"], "text": "…"}\'');
}
const sources = (args && Array.isArray(args.sources)) ? args.sources.map(String) : [];
const text = (args && typeof args.text === 'string') ? args.text : '';
const limitations =
  'No web access: this research used only the sources given' +
  (sources.length ? ` (${sources.join(', ')})` : '') +
  (text ? `${sources.length ? ' and' : ''} the text passed in args` : '') +
  (!sources.length && !text ? ' (none were given, so it relied on the model alone)' : '') + '.';
log(limitations);
const material =
  (sources.length ? `Sources (read them with your file tools): ${sources.join(', ')}\n` : '') +
  (text ? `Source text:\n<<<\n${text}\n>>>\n` : '');

phase('Scope');
const scope = await agent(
  `Plan research for this question. Propose up to 5 focused search queries to run against the sources.\nQuestion: ${question}\n${material}`,
  {
    label: 'scope the question',
    schema: {
      type: 'object',
      properties: { queries: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1, maxItems: 5 } },
      required: ['queries'],
    },
  });
const queries = (scope && Array.isArray(scope.queries) && scope.queries.length ? scope.queries : [question]).slice(0, 5);

phase('Search');
const notes = await parallel(queries.map((query, i) => () => agent(
  `Search the sources for material on: ${query}\nQuestion being researched: ${question}\n${material}` +
  'Quote short excerpts and name the source of each. Report only what the sources say.',
  {
    label: `search ${i + 1}: ${query}`.slice(0, 60),
    capabilities: ['read_files'],
    schema: {
      type: 'object',
      properties: {
        notes: {
          type: 'array',
          items: {
            type: 'object',
            properties: { source: { type: 'string' }, excerpt: { type: 'string' } },
            required: ['source', 'excerpt'],
          },
          maxItems: 8,
        },
      },
      required: ['notes'],
    },
  })));
const allNotes = notes.filter(Boolean).flatMap((n) => n.notes || []);

phase('Extract');
const extracted = await agent(
  `Extract the distinct, checkable claims that answer the question from these notes.\nQuestion: ${question}\nNotes:\n${JSON.stringify(allNotes, null, 1)}`,
  {
    label: 'extract claims',
    schema: {
      type: 'object',
      properties: {
        claims: {
          type: 'array',
          items: {
            type: 'object',
            properties: { claim: { type: 'string' }, source: { type: 'string' } },
            required: ['claim', 'source'],
          },
          minItems: 1,
          maxItems: 8,
        },
      },
      required: ['claims'],
    },
  });
const claims = (extracted && extracted.claims) || [];

phase('Verify');
const verdicts = await parallel(claims.map((c, i) => () => agent(
  `You are a skeptic. Try to refute this claim using the sources; accept it only if they support it.\nClaim: ${c.claim}\nCited source: ${c.source}\n${material}`,
  {
    label: `verify claim ${i + 1}`,
    capabilities: ['read_files'],
    schema: {
      type: 'object',
      properties: {
        verdict: { type: 'string', enum: ['supported', 'refuted', 'uncertain'] },
        reason: { type: 'string' },
      },
      required: ['verdict', 'reason'],
    },
  })));
const checked = claims.map((c, i) => ({
  claim: c.claim,
  source: c.source,
  verdict: verdicts[i] ? verdicts[i].verdict : 'uncertain',
  reason: verdicts[i] ? verdicts[i].reason : 'the verifier did not answer',
}));

phase('Synthesize');
const held = checked.filter((c) => c.verdict !== 'refuted');
const synthesis = await agent(
  `Answer the question using only these verified claims; say where the evidence is thin.\nQuestion: ${question}\nClaims:\n${JSON.stringify(held, null, 1)}`,
  {
    label: 'synthesize the answer',
    schema: { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] },
  });

return {
  question,
  answer: synthesis ? synthesis.answer : null,
  claims: checked,
  sources,
  limitations,
};
