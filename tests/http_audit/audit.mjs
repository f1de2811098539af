// Runs the GraphQL-over-HTTP spec's server audits (npm package graphql-http) against a URL and
// prints one line per audit that is not ok, then the plain closing line "N passed, N failed".
import { serverAudits } from 'graphql-http';

const url = process.argv[2];
let passed = 0;
let failed = 0;
for (const audit of serverAudits({ url })) {
  const result = await audit.fn();
  if (result.status === 'ok') passed++;
  else { failed++; console.log(`${result.status}: ${audit.name}: ${result.reason}`); }
}
console.log(`${passed} passed, ${failed} failed`);
