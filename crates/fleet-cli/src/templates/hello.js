export const meta = {
  name: 'hello',
  description: 'Greets the project: three agents in parallel, then one that sums up. A workflow to copy from.',
  phases: [
    { title: 'Look', detail: 'three agents look at the project at once' },
    { title: 'Sum up', detail: 'one agent writes a short summary' },
  ],
};

// args: { topics?: string[] }
const topics = (args && Array.isArray(args.topics)) ? args.topics.map(String) : ['layout', 'tests', 'docs'];

phase('Look');
const notes = await parallel(topics.map((topic) => () =>
  agent(`Look at this project's ${topic} and say in one sentence what you see.`, {
    label: `look at ${topic}`,
    capabilities: ['read_files'],
  })));

phase('Sum up');
const summary = await agent(
  `Sum up these notes in two sentences:\n${notes.filter(Boolean).join('\n')}`,
  { label: 'sum up' });
log(`${notes.filter(Boolean).length} of ${topics.length} agents answered`);
return summary;
