// ESLint for the dashboard (static/js, browser ES modules) and its unit tests (tests/js, Node).
// Run from the repository root: tests/js/node_modules/.bin/eslint --config tests/js/eslint.config.mjs static/js tests/js
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['tests/js/node_modules/**'] },
  js.configs.recommended,
  {
    files: ['static/js/**/*.js'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: globals.browser },
  },
  {
    files: ['tests/js/**/*.mjs'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: globals.node },
  },
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    // `const { a, ...rest } = o` is how a row drops fields.
    rules: { 'no-unused-vars': ['error', { ignoreRestSiblings: true }] },
  },
];
