export const meta = {
  name: 'pipeline',
  description: 'Benchmark: items through three agent() stages with pipeline() (args.items, default 500)',
};

const items = Array.from({ length: args?.items ?? 500 }, (_, i) => `item ${i}`);
const results = await pipeline(
  items,
  (item) => agent(`summarize ${item}`),
  (summary, item) => agent(`critique ${item}: ${summary}`),
  (critique, item) => agent(`rewrite ${item}: ${critique}`),
);
return {
  items: items.length,
  answered: results.filter((r) => typeof r === 'string' && r.startsWith('ok:')).length,
};
