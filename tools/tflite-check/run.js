#!/usr/bin/env node
// Runs .tflite models in two WASM builds of the TensorFlow Lite interpreter,
// LiteRT.js (@litertjs/core) and tfjs-tflite, offline in Node, for
// inspectd's export test (models/netdef). Usage:
//
//   node run.js JOB.json
//
// JOB.json: {"jobs": [{"model": "m.tflite", "inputs": {"image": "image.f32"},
// "out": "dir"}]}. Inputs are raw little-endian float32 files in the model's
// layout; each output is written to <out>/<interpreter>/<name>.f32 and a
// JSON summary (names, shapes, seconds) is printed on stdout. Both
// interpreters are browser libraries: the shims below give them what they
// look for (self, location, importScripts) and read the .wasm files from
// node_modules, so nothing is fetched.
'use strict';

const fs = require('fs');
const path = require('path');
const vm = require('vm');

const NM = path.join(__dirname, 'node_modules');

globalThis.self = globalThis;
globalThis.location = {origin: 'file://', href: 'file://' + NM + '/', protocol: 'file:'};
// importScripts evaluates an Emscripten glue script as CommonJS and exposes
// its factory where each library looks for it.
globalThis.importScripts = (url) => {
  const file = String(url).replace(/^file:\/\//, '');
  const code = fs.readFileSync(file, 'utf8');
  const mod = {exports: {}};
  const fn = vm.runInThisContext(
      '(function (exports, require, module, __filename, __dirname) {' + code + '\n})', {filename: file});
  fn(mod.exports, require, mod, file, path.dirname(file));
  const factory = mod.exports;
  if (path.basename(file).startsWith('tflite_web_api')) {
    const wasm = fs.readFileSync(file.replace(/\.js$/, '.wasm'));
    self.tflite_web_api_ModuleFactory = (arg) => factory(Object.assign({}, arg, {wasmBinary: wasm}));
  } else {
    self.ModuleFactory = factory;
  }
};

function readF32(file) {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function writeF32(file, arr) {
  fs.mkdirSync(path.dirname(file), {recursive: true});
  const f = Float32Array.from(arr);
  fs.writeFileSync(file, Buffer.from(f.buffer));
}

async function loadLiteRT() {
  const litert = await import(path.join(NM, '@litertjs/core/dist/index.js'));
  await litert.loadLiteRt(path.join(NM, '@litertjs/core/wasm') + '/');
  return {
    name: 'litert',
    async run(modelBytes, inputs) {
      const model = await litert.loadAndCompile(new Uint8Array(modelBytes), {accelerator: 'wasm'});
      const ins = model.getInputDetails().map((d) => {
        const data = inputs[d.name];
        if (!data) throw new Error(`litert: no input file for model input ${d.name}`);
        return new litert.Tensor(data, d.shape);
      });
      const outs = await model.run(ins);
      const details = model.getOutputDetails();
      const res = {};
      for (let i = 0; i < outs.length; i++) {
        res[details[i].name] = {shape: Array.from(details[i].shape), data: Float32Array.from(await outs[i].toTypedArray())};
        outs[i].delete();
      }
      ins.forEach((t) => t.delete());
      model.delete();
      return res;
    },
  };
}

async function loadTfjs() {
  const tf = require('@tensorflow/tfjs-core');
  require('@tensorflow/tfjs-backend-cpu');
  await tf.setBackend('cpu');
  const tflite = require('@tensorflow/tfjs-tflite');
  tflite.setWasmPath(path.join(NM, '@tensorflow/tfjs-tflite/wasm') + '/');
  // Hide SharedArrayBuffer while the library probes the WASM features, so
  // that it picks the single-threaded SIMD build (no workers in Node).
  const sab = globalThis.SharedArrayBuffer;
  return {
    name: 'tfjs',
    async run(modelBytes, inputs) {
      globalThis.SharedArrayBuffer = undefined;
      let model;
      try {
        const ab = modelBytes.buffer.slice(modelBytes.byteOffset, modelBytes.byteOffset + modelBytes.byteLength);
        model = await tflite.loadTFLiteModel(ab, {numThreads: 1});
      } finally {
        globalThis.SharedArrayBuffer = sab;
      }
      const ins = model.inputs.map((d) => {
        const data = inputs[d.name];
        if (!data) throw new Error(`tfjs: no input file for model input ${d.name}`);
        return tf.tensor(data, d.shape, 'float32');
      });
      let outs = model.predict(ins.length === 1 ? ins[0] : ins);
      const res = {};
      const put = (name, t) => {
        res[name] = {shape: t.shape, data: Float32Array.from(t.dataSync())};
        t.dispose();
      };
      if (outs instanceof tf.Tensor) {
        put(model.outputs[0].name, outs);
      } else if (Array.isArray(outs)) {
        outs.forEach((t, i) => put(model.outputs[i].name, t));
      } else {
        for (const [name, t] of Object.entries(outs)) put(name, t);
      }
      ins.forEach((t) => t.dispose());
      return res;
    },
  };
}

async function main() {
  if (process.argv.length !== 3) {
    console.error('usage: node run.js JOB.json');
    process.exit(2);
  }
  const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const interpreters = [await loadLiteRT(), await loadTfjs()];
  const summary = [];
  for (const j of job.jobs) {
    const modelBytes = fs.readFileSync(j.model);
    const inputs = {};
    for (const [name, file] of Object.entries(j.inputs)) inputs[name] = readF32(file);
    for (const it of interpreters) {
      const t0 = process.hrtime.bigint();
      let res;
      try {
        res = await it.run(modelBytes, inputs);
      } catch (e) {
        throw new Error(`${it.name}: ${j.model}: ${e && e.message ? e.message : e}`);
      }
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const outputs = {};
      for (const [name, o] of Object.entries(res)) {
        writeF32(path.join(j.out, it.name, name + '.f32'), o.data);
        outputs[name] = o.shape;
      }
      summary.push({model: j.model, interpreter: it.name, seconds, outputs});
    }
  }
  process.stdout.write(JSON.stringify(summary) + '\n');
}

main().catch((e) => {
  console.error('tflite-check: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
