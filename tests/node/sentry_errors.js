// Sends errors to a Calm collector with Sentry's real JavaScript SDK for Node
// (@sentry/node, installed into tests/node by scripts/install-peers).
//
// usage: node sentry_errors.js DSN RUNS
//
// Five kinds of exceptions raised by the runtime or the app from five code paths,
// RUNS times each (a number in each message varies), 20 + 10 captureMessage calls of
// two templates, and one exception with an explicit fingerprint. Prints a JSON summary
// as its last line.

"use strict";

const Sentry = require("@sentry/node");

class PaymentDeclined extends Error {
  constructor(message) {
    super(message);
    this.name = "PaymentDeclined";
  }
}

function readOrderTotal(n) {
  const orders = {};
  // TypeError from the runtime: reading a property of undefined.
  return orders[`order-${n}`].total;
}

function allocateSlots(n) {
  // RangeError from the runtime.
  return new Array(-n - 1);
}

function parsePayload(n) {
  // SyntaxError from the runtime.
  return JSON.parse(`{"order": ${n}, broken`);
}

function chargeCard(n) {
  throw new PaymentDeclined(`card declined, attempt ${n} of 0x${(n * 4096).toString(16)}`);
}

async function loadConfig(n) {
  await new Promise((resolve) => setImmediate(resolve));
  throw new Error(`config ${n} missing`);
}

const KINDS = [readOrderTotal, allocateSlots, parsePayload, chargeCard, loadConfig];

async function capture(fn, n) {
  try {
    await fn(n);
  } catch (e) {
    Sentry.captureException(e);
  }
}

async function main() {
  const [dsn, runsArg] = process.argv.slice(2);
  const runs = Number(runsArg || "50");
  Sentry.init({
    dsn,
    release: "calm-node@1.0.0",
    environment: "ci",
    maxBreadcrumbs: 20,
    sampleRate: 1.0,
    tracesSampleRate: 0,
  });
  // Every capture below runs after an await, as in a server's request handler, so each
  // kind has one stack (a synchronous first call would also carry the module's frames).
  await new Promise((resolve) => setImmediate(resolve));
  let sent = 0;
  for (let i = 0; i < runs; i++) {
    for (let k = 0; k < KINDS.length; k++) {
      const fn = KINDS[k];
      Sentry.setUser({ id: i % 7, email: `u${i % 7}@example.com` });
      Sentry.setTag("kind", fn.name);
      Sentry.addBreadcrumb({ category: "calm.test", message: `step ${i}.${k}`, level: "info" });
      await capture(fn, i * 7 + k);
      sent += 1;
    }
    // The transport holds at most 64 requests at once: flush now and then.
    if (i % 5 === 4) {
      await Sentry.flush(30000);
    }
  }
  for (let i = 0; i < 20; i++) {
    Sentry.captureMessage(`Payment ${i} failed for order ${1000 + i}`, "warning");
  }
  await Sentry.flush(30000);
  for (let i = 0; i < 10; i++) {
    Sentry.captureMessage(`Queue length ${i * 11} over limit`, "info");
  }
  await Sentry.flush(30000);
  Sentry.withScope((scope) => {
    scope.setFingerprint(["calm-explicit", "{{ default }}"]);
    try {
      chargeCard(1);
    } catch (e) {
      Sentry.captureException(e);
    }
  });
  const flushed = await Sentry.flush(30000);
  await Sentry.close(30000);
  console.log(JSON.stringify({ exceptions: sent, messages: 30, fingerprinted: 1, flushed }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
