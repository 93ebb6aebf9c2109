export const meta = { name: 'review-code', description: 'tbd' };
return null;
