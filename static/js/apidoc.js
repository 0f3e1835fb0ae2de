// Reading the server's API documents (GET /api/openapi.json, GET /api/asyncapi.json) for the API
// page: pure helpers, no DOM, so that tests/js can run them under Node.

/** The name a `$ref` points at: `#/components/schemas/Amount` is `Amount`. */
export function refName(ref) {
  return String(ref).split('/').pop();
}

/**
 * A schema as a short type: `string`, `integer`, `OrderSummary`, `Position[]`, `string | null`,
 * `"Pending" | "Paid"`, `map of Action[]`. References stay names, so that a page can link them.
 * Returns parts: strings and `{ ref: name }` objects, in order.
 */
export function typeParts(schema) {
  if (!schema || typeof schema !== 'object') return ['any'];
  if (schema.$ref) return [{ ref: refName(schema.$ref) }];
  const union = schema.oneOf || schema.anyOf;
  if (union) return joinParts(union.map(typeParts), ' | ');
  if (schema.allOf) return joinParts(schema.allOf.map(typeParts), ' & ');
  if (schema.const !== undefined) return [JSON.stringify(schema.const)];
  if (Array.isArray(schema.enum)) return [schema.enum.map((v) => JSON.stringify(v)).join(' | ')];
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  if (!types.length) return schema.properties ? ['object'] : ['any'];
  return joinParts(
    types.map((type) => {
      if (type === 'array') return [...typeParts(schema.items), '[]'];
      if (type === 'object' && schema.additionalProperties && typeof schema.additionalProperties === 'object') {
        return ['map of ', ...typeParts(schema.additionalProperties)];
      }
      return [schema.format && type !== 'integer' && type !== 'number' ? `${type} (${schema.format})` : type];
    }),
    ' | ',
  );
}

function joinParts(lists, separator) {
  const out = [];
  lists.forEach((parts, i) => {
    if (i) out.push(separator);
    out.push(...parts);
  });
  return out;
}

/** `typeParts` as plain text. */
export function typeText(schema) {
  return typeParts(schema)
    .map((p) => (typeof p === 'string' ? p : p.ref))
    .join('');
}

/** What a schema limits, in words: `1 to 500`, `at most 100 characters`, `default 50`. */
export function constraints(schema) {
  if (!schema || typeof schema !== 'object') return [];
  const out = [];
  const min = schema.minimum ?? schema.exclusiveMinimum;
  const max = schema.maximum ?? schema.exclusiveMaximum;
  if (min !== undefined && max !== undefined) out.push(`${min} to ${max}`);
  else if (schema.exclusiveMinimum !== undefined) out.push(`greater than ${schema.exclusiveMinimum}`);
  else if (schema.minimum !== undefined && schema.minimum !== 0) out.push(`at least ${schema.minimum}`);
  else if (max !== undefined) out.push(`at most ${max}`);
  if (schema.maxLength !== undefined) out.push(`at most ${schema.maxLength} characters`);
  if (schema.default !== undefined) out.push(`default ${JSON.stringify(schema.default)}`);
  if (schema.pattern) out.push(`pattern ${schema.pattern}`);
  return out;
}

/** Text with `code` spans, as parts: strings and `{ code: text }` objects. */
export function codeSpans(text) {
  const parts = [];
  String(text ?? '')
    .split('`')
    .forEach((piece, i) => {
      if (!piece) return;
      parts.push(i % 2 ? { code: piece } : piece);
    });
  return parts;
}

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/**
 * The operations of an OpenAPI document grouped by their first tag, in the document's tag order:
 * `[{ tag, description, operations: [{ method, path, operation }] }]`.
 */
export function operationsByTag(doc) {
  const groups = new Map((doc.tags || []).map((t) => [t.name, { tag: t.name, description: t.description || '', operations: [] }]));
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      const operation = item[method];
      if (!operation) continue;
      const tag = operation.tags?.[0] || 'other';
      if (!groups.has(tag)) groups.set(tag, { tag, description: '', operations: [] });
      groups.get(tag).operations.push({ method: method.toUpperCase(), path, operation });
    }
  }
  return [...groups.values()].filter((g) => g.operations.length);
}

/** An operation's parameters with `$ref`s to `#/components/parameters` resolved. */
export function parameters(doc, operation) {
  return (operation.parameters || []).map((p) => (p.$ref ? doc.components?.parameters?.[refName(p.$ref)] : p)).filter(Boolean);
}

/** An operation's answers, by status in order: `[{ status, description, schema, codes }]`. */
export function responses(operation) {
  return Object.entries(operation.responses || {})
    .map(([status, response]) => {
      const schema = response.content?.['application/json']?.schema ?? response.content?.['text/plain']?.schema ?? null;
      // An error answer narrows `error.code` to the codes this route gives.
      const narrowed = schema?.allOf?.[1]?.properties?.error?.properties?.code;
      const codes = narrowed?.enum || (narrowed?.const ? [narrowed.const] : []);
      return { status: Number(status), description: response.description || '', schema: codes.length ? schema.allOf[0] : schema, codes };
    })
    .sort((a, b) => a.status - b.status);
}

/** The roles an operation's security names (none for the open ones). */
export function roles(operation) {
  const names = new Set();
  for (const requirement of operation.security || []) {
    for (const list of Object.values(requirement)) for (const role of list) names.add(role);
  }
  return [...names];
}

/** The properties of an object schema: `[{ name, schema, required }]`, in the document's order. */
export function properties(schema) {
  const required = new Set(schema?.required || []);
  return Object.entries(schema?.properties || {}).map(([name, s]) => ({ name, schema: s, required: required.has(name) }));
}

/** The messages of an AsyncAPI document by channel: `[{ channel, address, description, messages }]`. */
export function channels(doc) {
  return Object.entries(doc.channels || {}).map(([name, channel]) => ({
    channel: name,
    address: channel.address ?? name,
    description: channel.description || '',
    messages: Object.values(channel.messages || {})
      .map((m) => doc.components?.messages?.[refName(m.$ref)])
      .filter(Boolean),
  }));
}

/** An id usable as an HTML anchor for a schema. */
export const schemaAnchor = (name) => `schema-${String(name).replace(/[^A-Za-z0-9_-]/g, '-')}`;
