// Unit tests of static/js/apidoc.js: reading the server's OpenAPI and AsyncAPI documents for the
// API page. `node --test tests/js/*.test.mjs`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { importStatic } from './static-modules.mjs';

const { refName, typeParts, typeText, constraints, codeSpans, operationsByTag, parameters, responses, roles, properties, channels, schemaAnchor } =
  await importStatic('apidoc.js');

/** A document in the shape of src/http/openapi.rs's. */
const openapi = () => ({
  openapi: '3.1.0',
  tags: [{ name: 'orders', description: 'Orders.' }, { name: 'empty' }, { name: 'operations' }],
  paths: {
    '/api/orders': {
      get: {
        tags: ['orders'],
        summary: 'List orders',
        parameters: [
          { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } },
          { $ref: '#/components/parameters/X-Request-Id' },
        ],
        responses: {
          401: {
            description: 'No credentials.',
            content: {
              'application/json': {
                schema: {
                  allOf: [
                    { $ref: '#/components/schemas/ErrorBody' },
                    { properties: { error: { properties: { code: { enum: ['unauthenticated', 'invalid_token'] } } } } },
                  ],
                },
              },
            },
          },
          200: { description: 'A page.', content: { 'application/json': { schema: { $ref: '#/components/schemas/OrderPage' } } } },
        },
        security: [{ bearerToken: ['viewer', 'client', 'admin'] }, { sessionCookie: ['viewer', 'client', 'admin'] }],
      },
      post: { tags: ['orders'], responses: {}, security: [] },
    },
    '/healthz': { get: { tags: ['operations'], responses: { 200: { description: 'ok' } }, security: [] } },
  },
  components: { parameters: { 'X-Request-Id': { name: 'X-Request-Id', in: 'header', schema: { type: 'string' } } } },
});

test('types read as a person writes them, references kept as names', () => {
  assert.equal(refName('#/components/schemas/Amount'), 'Amount');
  assert.deepEqual(typeParts({ $ref: '#/components/schemas/Position' }), [{ ref: 'Position' }]);
  assert.equal(typeText({ type: ['string', 'null'] }), 'string | null');
  assert.equal(typeText({ oneOf: [{ $ref: '#/components/schemas/OrderStatus' }, { type: 'null' }] }), 'OrderStatus | null');
  assert.equal(typeText({ type: 'array', items: { $ref: '#/components/schemas/FieldError' } }), 'FieldError[]');
  assert.equal(typeText({ type: 'object', additionalProperties: { type: 'array', items: { $ref: '#/x/Action' } } }), 'map of Action[]');
  assert.equal(typeText({ type: 'string', enum: ['SUCCESS', 'FAILED'] }), '"SUCCESS" | "FAILED"');
  assert.equal(typeText({ type: 'string', format: 'date-time' }), 'string (date-time)');
  assert.equal(typeText({ type: 'integer', format: 'int64' }), 'integer');
  assert.equal(typeText(undefined), 'any');
});

test('limits are said in words', () => {
  assert.deepEqual(constraints({ type: 'integer', minimum: 1, maximum: 500, default: 50 }), ['1 to 500', 'default 50']);
  assert.deepEqual(constraints({ type: 'string', minLength: 1, maxLength: 100 }), ['at most 100 characters']);
  assert.deepEqual(constraints({ type: 'number', exclusiveMinimum: 0 }), ['greater than 0']);
  assert.deepEqual(constraints({ type: 'integer', minimum: 0 }), []);
});

test('code spans are marked', () => {
  assert.deepEqual(codeSpans('a `b` c'), ['a ', { code: 'b' }, ' c']);
  assert.deepEqual(codeSpans(''), []);
});

test('operations are grouped by tag in the tags order, empty tags left out', () => {
  const doc = openapi();
  const groups = operationsByTag(doc);
  assert.deepEqual(
    groups.map((g) => g.tag),
    ['orders', 'operations'],
  );
  assert.deepEqual(
    groups[0].operations.map((o) => `${o.method} ${o.path}`),
    ['GET /api/orders', 'POST /api/orders'],
  );
  const list = doc.paths['/api/orders'].get;
  assert.deepEqual(
    parameters(doc, list).map((p) => p.name),
    ['limit', 'X-Request-Id'],
  );
  assert.deepEqual(roles(list), ['viewer', 'client', 'admin']);
  assert.deepEqual(roles(doc.paths['/healthz'].get), []);
});

test('answers come in status order, an error with the codes this route gives', () => {
  const answers = responses(openapi().paths['/api/orders'].get);
  assert.deepEqual(
    answers.map((a) => a.status),
    [200, 401],
  );
  assert.deepEqual(answers[1].codes, ['unauthenticated', 'invalid_token']);
  assert.deepEqual(answers[1].schema, { $ref: '#/components/schemas/ErrorBody' });
  assert.deepEqual(answers[0].codes, []);
});

test('properties, channels and anchors', () => {
  assert.deepEqual(properties({ properties: { a: { type: 'string' }, b: { type: 'integer' } }, required: ['b'] }), [
    { name: 'a', schema: { type: 'string' }, required: false },
    { name: 'b', schema: { type: 'integer' }, required: true },
  ]);
  const asyncapi = {
    channels: { orders: { address: 'orders', messages: { orderCreated: { $ref: '#/components/messages/orderCreated' } } } },
    components: { messages: { orderCreated: { name: 'order.created' } } },
  };
  assert.deepEqual(channels(asyncapi), [{ channel: 'orders', address: 'orders', description: '', messages: [{ name: 'order.created' }] }]);
  assert.equal(schemaAnchor('Page_OrderSummary'), 'schema-Page_OrderSummary');
});
