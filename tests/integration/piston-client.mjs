// Drives a Piston server through the npm package piston-client, as a program written for Piston
// does: node piston-client.mjs NPM_DIR SERVER, with a JSON array of calls on stdin, each
// {"runtimes": []} or {"execute": [arguments of client.execute()]}, made in order on one
// client. Prints a JSON array of what each call returned. piston-client comes from NPM_DIR
// (scripts/install-npm puts it there).
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { readFileSync } from "node:fs";

const [npmDir, server] = process.argv.slice(2);
const entry = createRequire(`${npmDir}/`).resolve("piston-client");
const { piston } = await import(pathToFileURL(entry).href);
const client = piston({ server });
const results = [];
for (const call of JSON.parse(readFileSync(0, "utf8"))) {
  const [method] = Object.keys(call);
  const result = await client[method](...call[method]);
  // the client answers a failure with { success: false, error: Error }: keep the error's text
  if (result && result.error instanceof Error) {
    result.error = String(result.error);
  }
  results.push(result);
}
process.stdout.write(JSON.stringify(results));
