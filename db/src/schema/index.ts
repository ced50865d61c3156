export * from './auth.ts';
export * from './cards.ts';
export * from './charges.ts';
