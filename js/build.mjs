// Bundle the anywidget ESM entry and its stylesheet into cnnvis_widget/static/:
//   js/explorer.ts  -> cnnvis_widget/static/explorer.js   (esm, bundled, minified, es2020)
//   js/explorer.css -> cnnvis_widget/static/explorer.css
// Usage: node js/build.mjs [--watch] [--dev]   (--watch implies --dev: no minify, inline maps)
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const watch = process.argv.includes("--watch");
const dev = watch || process.argv.includes("--dev");

/** @type {import("esbuild").BuildOptions} */
const common = {
  absWorkingDir: root,
  outdir: resolve(root, "cnnvis_widget/static"),
  bundle: true,
  minify: !dev,
  target: "es2020",
  sourcemap: dev ? "inline" : false,
  legalComments: "none",
  logLevel: "info",
};

const builds = [
  { ...common, entryPoints: { explorer: "js/explorer.ts" }, format: "esm" },
  { ...common, entryPoints: { explorer: "js/explorer.css" } },
];

if (watch) {
  for (const options of builds) await (await esbuild.context(options)).watch();
} else {
  await Promise.all(builds.map((options) => esbuild.build(options)));
}
