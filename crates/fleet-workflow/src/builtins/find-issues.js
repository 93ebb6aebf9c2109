export const meta = { name: 'find-issues', description: 'tbd' };
return null;
