// Validates rendered Kubernetes objects (multi-document YAML files given as
// arguments) against the Kubernetes and Prometheus Operator schemas of the
// npm packages kubernetes-models and @kubernetes-models/prometheus-operator:
// each object's validate() (types, required fields, formats), then a
// TypeScript compile of every object as an object literal of its model's
// type, which refuses fields the schema does not have (a misspelt
// `readinesProbe` passes validate() but not the compiler).
//   node validate.mjs <out_dir> <rendered.yaml>...
// Run from a directory beside node_modules (npm ci of this package.json);
// <out_dir> must see the same node_modules (the compile resolves from it).
// Prints one line per object; exits 1 naming the file, object and error.
import {execFileSync} from "node:child_process";
import {readFileSync, writeFileSync} from "node:fs";
import path from "node:path";
import {fileURLToPath} from "node:url";
import YAML from "yaml";

const modules = path.join(path.dirname(fileURLToPath(import.meta.url)), "node_modules");

// apiVersion -> the module that holds its models.
function moduleOf(apiVersion) {
  if (apiVersion === "monitoring.coreos.com/v1") {
    return "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
  }
  return `kubernetes-models/${apiVersion}`;
}

const [outDir, ...files] = process.argv.slice(2);
if (!outDir || files.length === 0) {
  console.error("usage: node validate.mjs <out_dir> <rendered.yaml>...");
  process.exit(2);
}
let failures = 0;
const tsLines = [];
const imports = new Map();  // module -> Set(kind)
for (const file of files) {
  const docs = YAML.parseAllDocuments(readFileSync(file, "utf8"));
  for (const doc of docs) {
    if (doc.errors.length) {
      console.error(`FAIL ${file}: YAML: ${doc.errors[0].message}`);
      failures++;
      continue;
    }
    const obj = doc.toJSON();
    if (obj === null) continue;
    const name = `${file}: ${obj.kind}/${obj.metadata && obj.metadata.name}`;
    const mod = moduleOf(obj.apiVersion);
    let Model;
    try {
      Model = (await import(mod))[obj.kind];
    } catch (e) {
      Model = undefined;
    }
    if (!Model) {
      console.error(`FAIL ${name}: no model for ${obj.apiVersion} ${obj.kind}`);
      failures++;
      continue;
    }
    try {
      new Model(obj).validate();
      console.log(`ok ${name}`);
    } catch (e) {
      console.error(`FAIL ${name}: ${e.message}`);
      failures++;
    }
    if (!imports.has(mod)) imports.set(mod, new Set());
    imports.get(mod).add(obj.kind);
    const {apiVersion, kind, ...rest} = obj;
    tsLines.push(`// ${name}`);
    tsLines.push(`new ${alias(mod, kind)}(${JSON.stringify(rest, null, 1)});`);
  }
}

function alias(mod, kind) {
  return `${kind}_${[...imports.keys()].indexOf(mod)}`;
}

// The compile: unknown fields are excess properties of object literals.
const header = [...imports.entries()].map(([mod, kinds], i) =>
    `import {${[...kinds].map((k) => `${k} as ${k}_${i}`).join(", ")}} from ${JSON.stringify(mod)};`);
const ts = path.join(outDir, "objects.mts");
writeFileSync(ts, [...header, ...tsLines, ""].join("\n"));
writeFileSync(path.join(outDir, "tsconfig.json"), JSON.stringify({
  compilerOptions: {
    strict: true, noEmit: true, module: "nodenext", moduleResolution: "nodenext",
    target: "es2022", skipLibCheck: true, types: [],
  },
  files: ["objects.mts"],
}));
try {
  execFileSync(process.execPath, [path.join(modules, "typescript/bin/tsc"), "-p", outDir],
               {stdio: "pipe", encoding: "utf8"});
  console.log(`ok: ${tsLines.length / 2} objects compile as their models' types (no unknown fields)`);
} catch (e) {
  console.error(`FAIL: unknown or mistyped fields:\n${(e.stdout || "") + (e.stderr || "")}`);
  failures++;
}
process.exit(failures ? 1 : 0);
