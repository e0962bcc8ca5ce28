// Reads one JSON string per line (a query string), answers one JSON line: qs.parse with Strapi 5's
// options (@strapi/core middlewares/query: strictNullHandling, arrayLimit 100, depth 20).
// Run with NODE_PATH=<Strapi app>/node_modules so that it is Strapi's own qs.
'use strict';
const qs = require('qs');
const readline = require('readline');
const options = { strictNullHandling: true, arrayLimit: 100, depth: 20 };
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let answer;
  try {
    answer = { parsed: qs.parse(JSON.parse(line), options) };
  } catch (e) {
    answer = { error: String(e) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
});
