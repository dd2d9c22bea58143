// Validates AsyncAPI documents with the AsyncAPI project's own parser (@asyncapi/parser).
// Usage: node validate.mjs DOCUMENT.json...
// Prints every diagnostic as one JSON line {file, severity, code, message, path}; exits 1 when
// any diagnostic has error severity (0), or a file cannot be read, else 0.
import { readFile } from "node:fs/promises";

import { DiagnosticSeverity, Parser } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;
for (const file of process.argv.slice(2)) {
  const source = await readFile(file, "utf8");
  const { document, diagnostics } = await parser.parse(source, { source: file });
  for (const diagnostic of diagnostics) {
    const error = diagnostic.severity === DiagnosticSeverity.Error;
    failed ||= error;
    const { severity, code, message, path } = diagnostic;
    console.log(JSON.stringify({ file, severity, code, message, path }));
  }
  if (document === undefined) {
    failed = true;
    console.log(JSON.stringify({ file, severity: 0, code: "unparsed", message: "no document" }));
  }
}
process.exit(failed ? 1 : 0);
