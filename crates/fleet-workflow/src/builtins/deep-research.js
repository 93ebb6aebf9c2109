export const meta = { name: 'deep-research', description: 'tbd' };
return null;
