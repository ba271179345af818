#!/usr/bin/env node
// sdk_bench: Kuzzle's official JS SDK (kuzzle-sdk 7) writing N generated
// documents with sdk.bulk.mWrite, PER_CALL documents per call, one call after
// the other (as its users do). Prints one JSON line: docs/s, client CPU per
// document (process.cpuUsage around the writes), peak RSS (VmHWM, see
// peakRssKb).
//
//   node sdk_bench.js PORT INDEX N SHAPE PER_CALL http|websocket
//   SHAPE: small or big, the very documents bench_mwrite.c and docgen.py make.
//
// kuzzle-sdk is taken from the local stack (.stack/kuzzle/node_modules), or
// from wherever Node finds it.
"use strict";

const path = require("path");

function loadSdk() {
  const local = path.join(__dirname, "..", "..", ".stack", "kuzzle", "node_modules", "kuzzle-sdk");
  for (const where of [local, "kuzzle-sdk"]) {
    try {
      const sdk = require(where);
      const version = require(path.join(where, "package.json")).version;
      return { sdk, version };
    } catch (e) {
      if (where !== local) throw e;
    }
  }
  return null;
}

const WORDS = (
  "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november " +
  "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu red green " +
  "blue cyan magenta yellow black white north south east west up down left right zero one " +
  "two three four five six seven eight nine sensor gateway battery signal voltage current " +
  "pressure humidity temperature level status error"
).split(" ");

function bigNote(i) {
  const want = 1900 + (i % 50);
  // (i * 2654435761 + 1) mod 2^32, exactly
  let s = (Math.imul(i, 2654435761 | 0) + 1) >>> 0;
  if (s === 0) s = 1;
  const out = [];
  let n = 0;
  while (n < want) {
    s = (s ^ (s << 13)) >>> 0;
    s = (s ^ (s >>> 17)) >>> 0;
    s = (s ^ (s << 5)) >>> 0;
    const w = WORDS[s % 64];
    out.push(w);
    n += w.length + (n ? 1 : 0);
  }
  return out.join(" ").slice(0, want);
}

const pad = (v, w) => String(v).padStart(w, "0");

// Peak RSS in KiB: VmHWM from /proc/self/status where there is one.
// process.resourceUsage().maxRSS is getrusage's ru_maxrss, which on Linux
// keeps the parent's RSS at fork time across exec (a child of a big process
// reports at least the parent's size); it is the fallback.
function peakRssKb() {
  try {
    const m = /VmHWM:\s*(\d+)\s*kB/.exec(require("fs").readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]);
  } catch (e) {
    // not Linux
  }
  return process.resourceUsage().maxRSS;
}

function makeDoc(i, shape) {
  const _id = `gw1-${pad(i, 8)}`;
  if (shape === "big") {
    return { _id, body: { sensor: `s${pad(i % 500, 3)}`, seq: i, note: bigNote(i) } };
  }
  return {
    _id,
    body: {
      sensor: `s${pad(i % 500, 3)}`,
      temp: 15.0 + (i % 200) / 10.0,
      hum: 30 + (i % 50),
      ts: 1764000000 + i,
    },
  };
}

async function main() {
  const [port, index, nArg, shape, perArg, protocol] = process.argv.slice(2);
  if (!protocol || !["small", "big"].includes(shape) || !["http", "websocket"].includes(protocol)) {
    console.error("usage: node sdk_bench.js PORT INDEX N small|big PER_CALL http|websocket");
    process.exit(2);
  }
  const n = Number(nArg);
  const perCall = Number(perArg);
  const { sdk, version } = loadSdk();
  const { Kuzzle, Http, WebSocket } = sdk;

  // BENCH_DUMP=FILE: write the documents as JSON text there and stop (the
  // temperatures are numbers like 15 or 15.1: compare parsed, not as text).
  const docs = [];
  for (let i = 0; i < n; i++) docs.push(makeDoc(i, shape));
  if (process.env.BENCH_DUMP) {
    require("fs").writeFileSync(process.env.BENCH_DUMP, JSON.stringify(docs));
    return 0;
  }
  const inputBytes = Buffer.byteLength(JSON.stringify(docs));

  // BENCH_HOST (default 127.0.0.1) and BENCH_SSL=1 (HTTPS or wss: through
  // the stack's TLS proxy, whose certificate names localhost; trust its CA
  // with NODE_EXTRA_CA_CERTS).
  const host = process.env.BENCH_HOST || "127.0.0.1";
  const opts = { port: Number(port), ssl: process.env.BENCH_SSL === "1" };
  const proto = protocol === "http" ? new Http(host, opts) : new WebSocket(host, opts);
  const kuzzle = new Kuzzle(proto, { autoResubscribe: false, offlineMode: "manual" });
  kuzzle.on("networkError", (e) => console.error("sdk_bench: network error:", e.message));
  await kuzzle.connect();

  let written = 0;
  let failed = 0;
  let firstError = null;
  const rssBefore = peakRssKb();
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let start = 0; start < n; start += perCall) {
    const batch = docs.slice(start, start + perCall);
    try {
      const res = await kuzzle.bulk.mWrite(index, "c", batch);
      written += res.successes.length;
      failed += res.errors.length;
      if (res.errors.length && !firstError) firstError = JSON.stringify(res.errors[0]).slice(0, 300);
    } catch (e) {
      failed += batch.length;
      if (!firstError) firstError = `${e.status || ""} ${e.id || ""} ${e.message}`.slice(0, 300);
    }
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(c0);
  const peakRssMb = peakRssKb() / 1024;
  kuzzle.disconnect();

  const out = {
    docs: n,
    written,
    failed,
    seconds: Number(seconds.toFixed(4)),
    docs_per_s: Math.round(written / seconds),
    cpu_us_per_doc: Number(((cpu.user + cpu.system) / n).toFixed(3)),
    peak_rss_mb: Number(peakRssMb.toFixed(1)),
    rss_before_mb: Number((rssBefore / 1024).toFixed(1)),
    input_mb: Number((inputBytes / 1048576).toFixed(1)),
    per_call: perCall,
    protocol,
    ssl: opts.ssl,
    sdk: version,
    status: failed === 0 ? "ok" : "failed",
  };
  if (firstError) {
    out.first_error = firstError;
    console.error(`sdk_bench: ${failed} documents failed, first: ${firstError}`);
  }
  console.log(JSON.stringify(out));
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error("sdk_bench:", e && e.stack ? e.stack : e);
    process.exit(2);
  },
);
