// Imports a module of static/js into Node for the unit tests. Node reads a data: URL as an ES
// module whatever the package.json files around it say (static/ has none), but a data: URL
// cannot resolve relative imports: so each relative import (`from './api.js'`) is rewritten to
// the data: URL of that module, recursively. The same file always becomes the same URL, so two
// modules that import api.js share one instance of it, as in the browser.

import { readFileSync } from 'node:fs';

const STATIC_JS = new URL('../../static/js/', import.meta.url);
const urls = new Map(); // file URL -> data: URL, or null while being built (an import cycle)

function dataUrl(file) {
  if (urls.has(file.href)) {
    const url = urls.get(file.href);
    if (url === null) throw new Error(`import cycle through ${file.pathname}`);
    return url;
  }
  urls.set(file.href, null);
  const source = readFileSync(file, 'utf8').replace(
    /(\b(?:from|import)\s*)(['"])(\.\.?\/[^'"]+)\2/g,
    (_, keyword, quote, specifier) => `${keyword}${quote}${dataUrl(new URL(specifier, file))}${quote}`,
  );
  // encodeURIComponent leaves ' alone, and this URL may go between quotes in another module.
  const url = `data:text/javascript,${encodeURIComponent(source).replaceAll("'", '%27')}`;
  urls.set(file.href, url);
  return url;
}

/** `importStatic('rules.js')`: the module static/js/rules.js, with the modules it imports. */
export const importStatic = (path) => import(dataUrl(new URL(path, STATIC_JS)));
