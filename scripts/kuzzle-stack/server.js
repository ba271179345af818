'use strict';

/*
 * Entry point of the local Kuzzle stack (started by scripts/kuzzle-stack.sh,
 * with opensearch-compat.js preloaded and the rc file named by the
 * environment variable `kuzzle_config`).
 *
 * Two things differ from a stock Kuzzle:
 *
 * 1. Loopback only. Kuzzle listens on every interface; uWS `App().listen(port,
 *    cb)` is wrapped so that it becomes `listen('127.0.0.1', port, cb)`.
 *
 * 2. Realtime without the cluster module. The cluster module needs a private
 *    non-loopback IPv4, so the stack runs with `cluster.enabled: false`. The
 *    realtime core (hotel clerk, realtime controller, backend cluster API)
 *    still asks the cluster for room bookkeeping; without an answerer those
 *    calls fail with a 500. When the cluster is disabled, a small local room
 *    table answers them instead, registered in the `kuzzle:state:live` hook
 *    (after plugins are loaded, before Kuzzle accepts requests).
 *
 * Any failure to apply either change aborts the process.
 */

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const LISTEN_HOST = '127.0.0.1';
const TAG = '[kuzzle-local-stack]';

function die(message, error) {
  process.stderr.write(`${TAG} fatal: ${message}${error ? ` (${error.stack || error.message})` : ''}\n`);
  process.exit(1);
}

const stackDir = process.env.KUZZLE_STACK_KUZZLE_DIR || __dirname;
const stackRequire = createRequire(path.join(stackDir, 'package.json'));

let kuzzleMain;
try {
  kuzzleMain = stackRequire.resolve('kuzzle');
} catch (error) {
  die(`package "kuzzle" not found from ${stackDir}`, error);
}
const kuzzleDist = path.dirname(kuzzleMain);

/* ------------------------------------------------------------------------ */
/* 1. Loopback-only listening                                               */
/* ------------------------------------------------------------------------ */

function bindToLoopback() {
  // uWS must be the instance Kuzzle's HTTP/WebSocket protocol loads.
  const protocolFile = path.join(kuzzleDist, 'lib/core/network/protocols/httpwsProtocol.js');
  if (!fs.existsSync(protocolFile)) {
    die(`${protocolFile} does not exist (Kuzzle's network layout changed?)`);
  }
  let uWS;
  try {
    uWS = createRequire(protocolFile)('uWebSockets.js');
  } catch (error) {
    die('cannot load uWebSockets.js the way Kuzzle does', error);
  }
  const originalApp = uWS && uWS.App;
  if (typeof originalApp !== 'function') {
    die('uWebSockets.js exports no App() function');
  }

  function loopbackApp(...args) {
    const app = originalApp.apply(this, args);
    const originalListen = app.listen;
    if (typeof originalListen !== 'function') {
      die('uWS App has no listen() method');
    }
    app.listen = function listen(...listenArgs) {
      // listen(port, cb) / listen(port, options, cb): insert the host.
      if (typeof listenArgs[0] === 'number') {
        listenArgs.unshift(LISTEN_HOST);
      }
      return originalListen.apply(this, listenArgs);
    };
    if (app.listen === originalListen) {
      die('cannot replace uWS App#listen()');
    }
    return app;
  }

  try {
    uWS.App = loopbackApp;
  } catch (error) {
    die('cannot replace uWebSockets.js App()', error);
  }
  if (uWS.App !== loopbackApp) {
    die('cannot replace uWebSockets.js App()');
  }
}

/* ------------------------------------------------------------------------ */
/* 2. Local answerers for the cluster-only realtime events                  */
/* ------------------------------------------------------------------------ */

// Koncorde index names are "<index>/<collection>" ("/" is forbidden in both).
function splitKoncordeIndex(koncordeIndex) {
  const at = koncordeIndex.indexOf('/');
  return {
    collection: koncordeIndex.slice(at + 1),
    index: koncordeIndex.slice(0, at),
  };
}

function registerLocalRealtimeAnswerers(kuzzle) {
  // roomId -> { index, collection, koncordeIndex, normalized, subscribers }
  const rooms = new Map();
  const birthdate = new Date().toISOString();

  // --- callbacks (kuzzle.call): the hotel clerk reports room life events ---

  kuzzle.onCall('core:realtime:room:create:after', (normalized) => {
    if (rooms.has(normalized.id)) {
      return;
    }
    const { index, collection } = splitKoncordeIndex(normalized.index);
    rooms.set(normalized.id, {
      collection,
      index,
      koncordeIndex: normalized.index,
      normalized,
      subscribers: 0,
    });
  });

  kuzzle.onCall('core:realtime:subscribe:after', (roomId) => {
    const room = rooms.get(roomId);
    if (room) {
      room.subscribers += 1;
    }
  });

  kuzzle.onCall('core:realtime:unsubscribe:after', (roomId) => {
    const room = rooms.get(roomId);
    if (room && room.subscribers > 0) {
      room.subscribers -= 1;
    }
  });

  // --- questions (kuzzle.ask) ---

  // The last local subscriber left: forget the room, and remove its filters
  // from Koncorde (with no other node, nobody else can still use it).
  kuzzle.onAsk('cluster:realtime:room:remove', (roomId) => {
    const room = rooms.get(roomId);
    if (!room) {
      return;
    }
    rooms.delete(roomId);
    kuzzle.koncorde.remove(roomId, room.koncordeIndex);
  });

  kuzzle.onAsk('cluster:realtime:room:count', (roomId) => {
    const room = rooms.get(roomId);
    return room ? room.subscribers : 0;
  });

  kuzzle.onAsk('cluster:realtime:room:list', () => {
    const list = {};
    for (const [roomId, room] of rooms) {
      if (!list[room.index]) {
        list[room.index] = {};
      }
      if (!list[room.index][room.collection]) {
        list[room.index][room.collection] = {};
      }
      list[room.index][room.collection][roomId] = room.subscribers;
    }
    return list;
  });

  // Used by realtime:join for a room unknown to this node: with a single
  // node, a room this node does not know does not exist.
  kuzzle.onAsk('cluster:realtime:filters:get', (roomId) => {
    const room = rooms.get(roomId);
    return room ? room.normalized : null;
  });

  // Cluster-wide events reach the *other* nodes: there are none. Listeners
  // are kept so that on/once/off/removeAllListeners behave normally.
  const clusterEvents = new (require('events').EventEmitter)();
  kuzzle.onAsk('cluster:event:broadcast', () => undefined);
  kuzzle.onAsk('cluster:event:on', (event, fn) => { clusterEvents.on(event, fn); });
  kuzzle.onAsk('cluster:event:once', (event, fn) => { clusterEvents.once(event, fn); });
  kuzzle.onAsk('cluster:event:off', (event, fn) => { clusterEvents.removeListener(event, fn); });
  kuzzle.onAsk('cluster:event:removeAllListeners', (event) => { clusterEvents.removeAllListeners(event); });

  kuzzle.onAsk('cluster:node:preventEviction', () => undefined);

  kuzzle.onAsk('cluster:status:get', () => ({
    activeNodes: 1,
    activity: [],
    nodes: [{ address: LISTEN_HOST, birthdate, id: global.nodeId }],
  }));
}

/* ------------------------------------------------------------------------ */
/* Start                                                                    */
/* ------------------------------------------------------------------------ */

bindToLoopback();

const { Backend } = stackRequire('kuzzle');
const app = new Backend('kuzzle-local-stack');

app.hook.register('kuzzle:state:live', () => {
  const kuzzle = global.kuzzle;
  try {
    if (kuzzle.config.cluster && kuzzle.config.cluster.enabled) {
      kuzzle.log.info(`${TAG} cluster enabled: realtime is answered by the cluster module`);
      return;
    }
    registerLocalRealtimeAnswerers(kuzzle);
    kuzzle.log.info(`${TAG} cluster disabled: local realtime answerers registered`);
  } catch (error) {
    die('cannot register the local realtime answerers', error);
  }
});

app
  .start()
  .then(() => {
    app.log.info(`${TAG} listening on ${LISTEN_HOST}:${global.kuzzle.config.server.port}`);
  })
  .catch((error) => {
    die('Kuzzle failed to start', error);
  });
