// Validates an AsyncAPI document with @asyncapi/parser (its JSON Schema of the specification and its
// Spectral ruleset). Usage: node validate.mjs <document.json|yaml>
// Exit 0: valid, no diagnostic of severity error (warnings are printed, not failures); 1: errors, printed;
// 2: wrong usage or an unreadable file. Installed from package-lock.json by `make asyncapi-validator`.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const require = createRequire(import.meta.url);
const { version } = require("@asyncapi/parser/package.json");
const SEVERITY = { 0: "error", 1: "warning", 2: "info", 3: "hint" };

const path = process.argv[2];
if (!path) {
  console.error("usage: node validate.mjs <asyncapi document>");
  process.exit(2);
}
let text;
try {
  text = await readFile(path, "utf8");
} catch (err) {
  console.error(`cannot read ${path}: ${err.message}`);
  process.exit(2);
}

const parser = new Parser();
const { document, diagnostics } = await parser.parse(text, { source: path });
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
for (const d of diagnostics) {
  const where = d.path && d.path.length ? d.path.join("/") : "(document)";
  const line = `${SEVERITY[d.severity] ?? d.severity} ${d.code}: ${d.message} at ${where}`;
  (d.severity === DiagnosticSeverity.Error ? console.error : console.log)(line);
}
if (errors.length || !document) {
  console.error(`@asyncapi/parser ${version}: INVALID, ${errors.length} error(s) in ${path}`);
  process.exit(1);
}
const warnings = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning).length;
console.log(
  `@asyncapi/parser ${version}: valid AsyncAPI ${document.version()}, ` +
    `${document.channels().length} channels, ${document.messages().length} messages, ` +
    `${warnings} warning(s)`,
);
