// Subscribes to a collection over WebSocket with Kuzzle's JS SDK, prints
// "ready" once subscribed, then the number of notifications received when
// `expected` arrived or `timeoutMs` passed, and their document ids. Used by tests/mwrite.rs (notify).
// usage: node subscribe.js PORT INDEX COLLECTION EXPECTED TIMEOUT_MS
const path = require('path');
const sdkPath = path.join(__dirname, '..', '..', '.stack', 'kuzzle', 'node_modules', 'kuzzle-sdk');
const { Kuzzle, WebSocket } = require(sdkPath);

const [port, index, collection, expected, timeoutMs] = process.argv.slice(2);
const kuzzle = new Kuzzle(new WebSocket('127.0.0.1', { port: Number(port) }));
let count = 0;
const ids = [];

function finish() {
  console.log(`notifications ${count} ${ids.join(',')}`);
  kuzzle.disconnect();
  process.exit(0);
}

(async () => {
  await kuzzle.connect();
  await kuzzle.realtime.subscribe(index, collection, {}, (n) => {
    if (n.type === 'document') {
      count += 1;
      ids.push(n.result._id);
      if (count >= Number(expected)) finish();
    }
  });
  console.log('ready');
  setTimeout(finish, Number(timeoutMs));
})().catch((e) => {
  console.error(`subscribe failed: ${e.message}`);
  process.exit(1);
});
