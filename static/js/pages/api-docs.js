// API: the REST API and the Kafka records as the server describes them (GET /api/openapi.json and
// GET /api/asyncapi.json), rendered as a page: every operation with its least role, parameters,
// body and answers (with the error codes it gives), every schema, and the three topics' records.

import { api, isAbort } from '../api.js';
import { typeParts, constraints, codeSpans, operationsByTag, parameters, responses, roles, properties, channels, schemaAnchor, refName } from '../apidoc.js';
import { h, replace, pageHeader, notice } from '../ui.js';

/** Text with its `code` spans as <code>. */
const prose = (text) => codeSpans(text).map((p) => (typeof p === 'string' ? p : h('code', {}, p.code)));

/** A schema's type, its references linked to their schema below. */
function typeOf(schema) {
  return h(
    'span',
    { class: 'api-type' },
    typeParts(schema).map((p) => (typeof p === 'string' ? p : h('a', { href: `#${schemaAnchor(p.ref)}` }, p.ref))),
  );
}

function detailsOf(schema, description) {
  const limits = constraints(schema);
  return [description ? prose(description) : null, limits.length ? h('span', { class: 'muted small api-limits' }, ` ${limits.join('; ')}`) : null];
}

/** A table of an object schema's properties; a schema that is not an object shows its type. */
function propertiesTable(schema, caption) {
  const rows = properties(schema);
  if (!rows.length) return h('p', {}, typeOf(schema), ' ', schema?.description ? prose(schema.description) : null);
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'data-table api-table' },
      h('caption', { class: 'visually-hidden' }, caption),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['Field', 'Type', 'Description'].map((c) => h('th', { scope: 'col' }, c)),
        ),
      ),
      h(
        'tbody',
        {},
        rows.map(({ name, schema: s, required }) =>
          h(
            'tr',
            {},
            h('th', { scope: 'row' }, h('code', {}, name), required ? h('span', { class: 'api-required', title: 'required' }, ' *') : null),
            h('td', {}, typeOf(s)),
            h('td', {}, detailsOf(s, s.description)),
          ),
        ),
      ),
    ),
  );
}

function operationView(doc, { method, path, operation }) {
  const params = parameters(doc, operation);
  const body = operation.requestBody?.content?.['application/json']?.schema;
  const who = roles(operation);
  return h(
    'details',
    { class: 'api-operation', id: operation.operationId },
    h(
      'summary',
      {},
      h('span', { class: `api-method api-method-${method.toLowerCase()}` }, method),
      ' ',
      h('code', { class: 'api-path' }, path),
      ' ',
      h('span', { class: 'muted' }, operation.summary || ''),
    ),
    h('div', { class: 'api-body' }, [
      ...operation.description.split('\n\n').map((para) => h('p', {}, prose(para))),
      who.length
        ? h(
            'p',
            { class: 'small' },
            'Roles: ',
            who.map((r, i) => [i ? ', ' : '', h('code', {}, r)]),
          )
        : null,
      params.length
        ? [
            h('h4', {}, 'Parameters'),
            h(
              'ul',
              { class: 'api-list' },
              params.map((p) =>
                h('li', {}, h('code', {}, p.name), ` (${p.in}${p.required ? ', required' : ''}) `, typeOf(p.schema), ' — ', detailsOf(p.schema, p.description)),
              ),
            ),
          ]
        : null,
      body
        ? [
            h('h4', {}, operation.requestBody.required ? 'Body (JSON)' : 'Body (JSON, optional)'),
            body.description ? h('p', {}, prose(body.description)) : null,
            propertiesTable(body, `Body of ${method} ${path}`),
          ]
        : null,
      h('h4', {}, 'Answers'),
      h(
        'ul',
        { class: 'api-list' },
        responses(operation).map((r) =>
          h(
            'li',
            {},
            h('span', { class: r.status < 400 ? 'api-status api-status-ok' : 'api-status api-status-error' }, String(r.status)),
            ' ',
            r.schema ? typeOf(r.schema) : null,
            ' ',
            r.codes.length ? [' ', r.codes.map((c, i) => [i ? ', ' : '', h('code', {}, c)])] : prose(r.description),
          ),
        ),
      ),
    ]),
  );
}

function schemasView(doc, idPrefix) {
  const schemas = Object.entries(doc.components?.schemas || {});
  return schemas.map(([name, schema]) =>
    h(
      'section',
      { class: 'api-schema', id: idPrefix ? `${idPrefix}-${schemaAnchor(name)}` : schemaAnchor(name), 'aria-label': name },
      h('h3', {}, name),
      schema.description && properties(schema).length ? h('p', { class: 'small' }, prose(schema.description)) : null,
      schema.allOf
        ? h(
            'p',
            {},
            'All of: ',
            schema.allOf.map((part, i) => [i ? ' and ' : '', part.$ref ? typeOf(part) : propertiesTable(part, name)]),
          )
        : null,
      schema.allOf ? null : propertiesTable(schema, `Fields of ${name}`),
    ),
  );
}

function recordsView(doc) {
  return channels(doc).map((c) =>
    h(
      'section',
      { class: 'api-channel', 'aria-label': `Topic ${c.address}` },
      h('h3', {}, 'Topic ', h('code', {}, c.address)),
      h('p', { class: 'small' }, prose(c.description)),
      h(
        'ul',
        { class: 'api-list' },
        c.messages.map((m) =>
          h(
            'li',
            {},
            h('code', {}, m.name),
            ': ',
            prose(m.summary),
            ' Value: ',
            h('a', { href: `#records-${schemaAnchor(refName(m.payload.$ref))}` }, refName(m.payload.$ref)),
            '. Key: the order id.',
          ),
        ),
      ),
    ),
  );
}

export const apiDocsPage = {
  title: 'API',
  nav: 'api',
  mount(main, ctx) {
    const body = h('div', {}, h('p', { class: 'muted' }, 'Reading the API documents…'));
    main.append(
      pageHeader(
        'API',
        h(
          'p',
          { class: 'lede' },
          'The REST API and the Kafka records, as this server describes them: ',
          h('a', { href: '/api/openapi.json' }, 'OpenAPI 3.1'),
          ' and ',
          h('a', { href: '/api/asyncapi.json' }, 'AsyncAPI 3.0'),
          ' documents, for tools and code generators.',
        ),
      ),
      body,
    );
    (async () => {
      try {
        const [openapi, asyncapi] = await Promise.all([api('/api/openapi.json', { signal: ctx.signal }), api('/api/asyncapi.json', { signal: ctx.signal })]);
        const groups = operationsByTag(openapi);
        replace(
          body,
          h('section', { class: 'card', 'aria-labelledby': 'api-intro-h' }, [
            h('h2', { id: 'api-intro-h' }, `${openapi.info.title} ${openapi.info.version}`),
            ...openapi.info.description.split('\n\n').map((para) => h('p', {}, prose(para.replaceAll('**', '')))),
            h(
              'nav',
              { 'aria-label': 'API sections' },
              h(
                'ul',
                { class: 'api-toc' },
                groups.map((g) => h('li', {}, h('a', { href: `#tag-${g.tag}` }, g.tag))),
                h('li', {}, h('a', { href: '#api-schemas-h' }, 'schemas')),
                h('li', {}, h('a', { href: '#api-records-h' }, 'records')),
              ),
            ),
          ]),
          groups.map((g) =>
            h(
              'section',
              { class: 'card', id: `tag-${g.tag}`, 'aria-labelledby': `tag-${g.tag}-h` },
              h('h2', { id: `tag-${g.tag}-h` }, g.tag),
              g.description ? h('p', { class: 'muted small' }, g.description) : null,
              g.operations.map((op) => operationView(openapi, op)),
            ),
          ),
          h('section', { class: 'card', 'aria-labelledby': 'api-schemas-h' }, h('h2', { id: 'api-schemas-h' }, 'Schemas'), schemasView(openapi)),
          h(
            'section',
            { class: 'card', 'aria-labelledby': 'api-records-h' },
            h('h2', { id: 'api-records-h' }, 'Records in Kafka'),
            h('p', {}, prose(asyncapi.info.description)),
            recordsView(asyncapi),
            h('h3', {}, 'Record headers'),
            propertiesTable(asyncapi.components.schemas.RecordHeaders, 'Record headers'),
            schemasView(
              { components: { schemas: Object.fromEntries(Object.entries(asyncapi.components.schemas).filter(([n]) => n !== 'RecordHeaders')) } },
              'records',
            ),
          ),
        );
      } catch (error) {
        if (!isAbort(error)) replace(body, notice('error', `Cannot read the API documents: ${error.message}`));
      }
    })();
    return () => {};
  },
};
