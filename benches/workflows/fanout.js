export const meta = {
  name: 'fanout',
  description: 'Benchmark: agent() calls fanned out through parallel() (args.calls, default 1000)',
};

const calls = args?.calls ?? 1000;
const results = await parallel(
  Array.from({ length: calls }, (_, i) => () => agent(`fanout item ${i}`)),
);
return { calls, answered: results.filter((r) => typeof r === 'string' && r.startsWith('ok:')).length };
