// Rebuilds proto/onnx.proto from the npm package onnx-buf (buf's build of a tagged ONNX release):
// its embedded FileDescriptorProto gives the exact schema, its .d.ts the upstream comments.
// Usage: npm pack onnx-buf@1.20.0-1 && tar xzf onnx-buf-*.tgz && node scripts/proto-from-onnx-buf.js package > proto/onnx.proto
'use strict';
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const protobuf = require('protobufjs');
require('protobufjs/ext/descriptor');

const pkgDir = process.argv[2];
if (!pkgDir) throw new Error('usage: node scripts/proto-from-onnx-buf.js <unpacked onnx-buf package folder>');
const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
const js = readFileSync(join(pkgDir, 'dist', 'onnx_pb.js'), 'utf8');
const dts = readFileSync(join(pkgDir, 'dist', 'onnx_pb.d.ts'), 'utf8');
const fdp = protobuf.descriptor.FileDescriptorProto.decode(Buffer.from(/fileDesc\("([^"]+)"/.exec(js)[1], 'base64'));

// Comments keyed by what they document: "onnx.X", "onnx.X#field", "onnx.E#VALUE", "onnx.X@oneof".
const comments = new Map();
let scope = '';
for (const [, body] of dts.matchAll(/\/\*\*([\s\S]*?)\*\//g)) {
  const lines = body.split('\n').map((l) => l.replace(/^\s*\* ?/, '').replace(/\s+$/, ''));
  const at = lines.findIndex((l) => l.startsWith('@generated from '));
  if (at < 0) continue;
  const m = /^@generated from (message|enum value|enum|field|oneof):? (.*)$/.exec(lines[at]);
  if (!m) continue;
  const text = lines.slice(0, at);
  while (text.length && !text[text.length - 1]) text.pop();
  while (text.length && !text[0]) text.shift();
  let key;
  if (m[1] === 'message' || m[1] === 'enum') key = scope = m[2];
  else if (m[1] === 'oneof') key = m[2].replace(/\.([^.]+)$/, '@$1');
  else key = `${scope}#${/(\w+)\s*=\s*-?\d+/.exec(m[2])[1]}`;
  if (text.length) comments.set(key, text);
}

const TYPES = { 1: 'double', 2: 'float', 3: 'int64', 4: 'uint64', 5: 'int32', 6: 'fixed64', 7: 'fixed32', 8: 'bool', 9: 'string', 12: 'bytes', 13: 'uint32', 15: 'sfixed32', 16: 'sfixed64', 17: 'sint32', 18: 'sint64' };
const LABELS = { 1: 'optional', 2: 'required', 3: 'repeated' };
const out = [];
const emitComment = (key, pad) => {
  for (const l of comments.get(key) ?? []) out.push(l ? `${pad}// ${l}` : `${pad}//`);
};
const typeOf = (f) => TYPES[f.type] ?? f.typeName.replace(/^\.onnx\./, '');
const fieldLine = (f, withLabel) => {
  const opts = f.options?.packed ? ' [packed = true]' : '';
  if (f.defaultValue) throw new Error(`default values are not handled (${f.name})`);
  return `${withLabel ? `${LABELS[f.label]} ` : ''}${typeOf(f)} ${f.name} = ${f.number}${opts};`;
};
function emitEnum(e, fq, pad) {
  emitComment(fq, pad);
  out.push(`${pad}enum ${e.name} {`);
  for (const v of e.value) {
    emitComment(`${fq}#${v.name}`, `${pad}  `);
    out.push(`${pad}  ${v.name} = ${v.number};`);
  }
  out.push(`${pad}}`, '');
}
function emitMessage(msg, fq, pad) {
  emitComment(fq, pad);
  out.push(`${pad}message ${msg.name} {`);
  const inner = `${pad}  `;
  const reserved = (msg.reservedRange ?? []).map((r) => (r.end - 1 === r.start ? `${r.start}` : `${r.start} to ${r.end - 1}`));
  if (reserved.length) out.push(`${inner}reserved ${reserved.join(', ')};`);
  if (msg.reservedName?.length) out.push(`${inner}reserved ${msg.reservedName.map((n) => JSON.stringify(n)).join(', ')};`);
  for (const e of msg.enumType ?? []) emitEnum(e, `${fq}.${e.name}`, inner);
  for (const n of msg.nestedType ?? []) emitMessage(n, `${fq}.${n.name}`, inner);
  const inOneof = (f) => Object.prototype.hasOwnProperty.call(f, 'oneofIndex');
  const oneofDone = new Set();
  for (const f of msg.field ?? []) {
    if (inOneof(f)) {
      if (oneofDone.has(f.oneofIndex)) continue;
      oneofDone.add(f.oneofIndex);
      const name = msg.oneofDecl[f.oneofIndex].name;
      emitComment(`${fq}@${name}`, inner);
      out.push(`${inner}oneof ${name} {`);
      for (const g of msg.field.filter((x) => inOneof(x) && x.oneofIndex === f.oneofIndex)) {
        emitComment(`${fq}#${g.name}`, `${inner}  `);
        out.push(`${inner}  ${fieldLine(g, false)}`);
      }
      out.push(`${inner}}`);
      continue;
    }
    emitComment(`${fq}#${f.name}`, inner);
    out.push(`${inner}${fieldLine(f, true)}`);
  }
  out.push(`${pad}}`, '');
}

out.push(
  `// onnx.proto of ONNX ${pkg.version.replace(/-\d+$/, '')} (package onnx, proto2, IR version ${Math.max(...fdp.enumType.find((e) => e.name === 'Version').value.map((v) => v.number))}).`,
  `// Rebuilt by scripts/proto-from-onnx-buf.js from npm ${pkg.name}@${pkg.version} (buf's compiled copy of the tagged`,
  '// upstream file): the schema is exact, comments are upstream\'s, their placement and blank lines ours.',
  '// Regenerate the TypeScript bindings with `npm run gen-proto` after changing it.',
  '//',
  '// Copyright (c) ONNX Project Contributors',
  '// SPDX-License-Identifier: Apache-2.0',
  '',
  'syntax = "proto2";',
  '',
  'package onnx;',
  '',
);
if (fdp.options?.optimizeFor === 3) out.push('option optimize_for = LITE_RUNTIME;', '');
for (const e of fdp.enumType ?? []) emitEnum(e, `onnx.${e.name}`, '');
for (const m of fdp.messageType) emitMessage(m, `onnx.${m.name}`, '');
process.stdout.write(`${out.join('\n').replace(/\n+$/, '')}\n`);
