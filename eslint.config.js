// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/**', 'coverage/**', 'bench/out/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': ['error', { patterns: [
        { group: ['**/test/**', '../test/*'], message: 'Nothing imports test/.' },
      ] }],
    },
  },
  {
    files: ['shared/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [
        { group: ['**/enqueuer/**', '**/dequeuer/**'], message: 'shared/ imports no service.' },
      ] }],
    },
  },
  {
    files: ['enqueuer/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['**/dequeuer/**'], message: 'Services never import each other.' }] }] },
  },
  {
    files: ['dequeuer/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [{ group: ['**/enqueuer/**'], message: 'Services never import each other.' }] }] },
  },
  {
    files: ['eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    // The dashboard: plain browser ES modules served as they are (no build step, not type-checked).
    files: ['ui/**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      sourceType: 'module',
      globals: Object.fromEntries(['window', 'document', 'location', 'sessionStorage', 'fetch', 'CSS', 'TextDecoder', 'atob', 'AbortController', 'setTimeout', 'clearTimeout', 'URLSearchParams', 'FormData'].map((g) => [g, 'readonly'])),
    },
  },
);
