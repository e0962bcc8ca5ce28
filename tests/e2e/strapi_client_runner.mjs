// Runs calls of Strapi's official JavaScript client (@strapi/client) and prints what each answered.
//
// stdin: a JSON list of cases, run one after the other in that order:
//   {"id": "strapi/find", "baseURL": "http://127.0.0.1:1337/api", "auth": null | "<token>",
//    "kind": "collection" | "single", "resource": "articles", "method": "find", "args": [...]}
// An argument written {"$ref": "<case id>", "path": "data.documentId"} is replaced by that value of
// an earlier case's answer (a write's documentId for the reads that follow it); when that case
// failed, the call is not made and the error is named RefError.
// stdout: one JSON list, in the same order:
//   {"id", "request": {"method", "url"}, "status", "body"}            the client resolved
//   {"id", "request": {...}, "status", "error": {"name", "body"}}    the client threw
// Run with STRAPI_CLIENT_DIR pointing at the install of strapi/client/install.sh.
import { createRequire } from 'node:module';
import path from 'node:path';

const clientDir = process.env.STRAPI_CLIENT_DIR;
if (!clientDir) throw new Error('STRAPI_CLIENT_DIR is not set');
const { strapi } = createRequire(path.join(clientDir, 'package.json'))('@strapi/client');

// The client returns bodies only: keep the HTTP exchange it made, to report the status as well.
let lastExchange = null;
const realFetch = globalThis.fetch;
globalThis.fetch = async (request, init) => {
  const response = await realFetch(request, init);
  lastExchange = { method: request.method, url: request.url, status: response.status };
  return response;
};

// An argument that names an earlier case which did not succeed: the call is not made.
class RefError extends Error {
  name = 'RefError';
}

function resolveRefs(value, answers) {
  if (Array.isArray(value)) return value.map((item) => resolveRefs(item, answers));
  if (value === null || typeof value !== 'object') return value;
  if (typeof value.$ref === 'string') {
    const answer = answers.get(value.$ref);
    const found = value.path.split('.').reduce((node, key) => (node == null ? undefined : node[key]), answer);
    if (found === undefined) throw new RefError(`${value.$ref} gave no ${value.path}`);
    return found;
  }
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveRefs(v, answers)]));
}

async function errorBody(error) {
  if (!error.response) return error.message;
  const text = await error.response.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function run(testCase, answers) {
  const client = strapi({ baseURL: testCase.baseURL, ...(testCase.auth ? { auth: testCase.auth } : {}) });
  const manager = client[testCase.kind](testCase.resource);
  lastExchange = null;
  const result = { id: testCase.id };
  try {
    const args = resolveRefs(testCase.args, answers);
    const body = await manager[testCase.method](...args);
    Object.assign(result, { body: body === undefined ? null : body });
    answers.set(testCase.id, body);
  } catch (error) {
    result.error = { name: error.name, body: await errorBody(error) };
  }
  result.request = lastExchange && { method: lastExchange.method, url: lastExchange.url };
  result.status = lastExchange ? lastExchange.status : null;
  return result;
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const answers = new Map();
const results = [];
for (const testCase of JSON.parse(Buffer.concat(chunks).toString('utf8'))) {
  results.push(await run(testCase, answers));
}
process.stdout.write(JSON.stringify(results));
