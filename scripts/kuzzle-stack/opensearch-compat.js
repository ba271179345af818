'use strict';

/*
 * Preloaded (`node --require`) before Kuzzle starts.
 *
 * Kuzzle 2.56 talks to its storage through `sdk-es7` (@elastic/elasticsearch
 * 7.13) and refuses any storage whose `info()` reports a version below 7.0.
 * The local storage engine (osmem-server) is OpenSearch-compatible and reports
 * `version.distribution: "opensearch"` with an OpenSearch version number
 * (3.x). OpenSearch speaks the Elasticsearch 7.10 API, so this module wraps
 * `Client.prototype.info` of the very `sdk-es7` instance Kuzzle loads, and,
 * only when the answer says `distribution: "opensearch"`, presents the
 * version number as 7.10.2. No Kuzzle file is modified.
 *
 * Anything unexpected (Kuzzle moved its storage module, `sdk-es7` is gone,
 * `info` is not a prototype method any more...) throws here, which aborts
 * the node process before Kuzzle starts: the stack fails loudly instead of
 * silently running without the shim.
 *
 * The Kuzzle installation is found through KUZZLE_STACK_KUZZLE_DIR (the
 * folder holding node_modules/kuzzle), or next to this file.
 */

const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const PRESENTED_VERSION = '7.10.2';
const TAG = '[opensearch-compat]';
const MARK = Symbol.for('kuzzle-local-stack.opensearch-compat');

function fail(message) {
  const error = new Error(`${TAG} cannot apply: ${message}`);
  // Printed here too, so the message is in the Kuzzle log even if whoever
  // catches the throw prints nothing.
  process.stderr.write(`${error.message}\n`);
  throw error;
}

function requireFrom(file) {
  return createRequire(file);
}

function kuzzleDistDir() {
  const stackDir = process.env.KUZZLE_STACK_KUZZLE_DIR || __dirname;
  let main;
  try {
    main = requireFrom(path.join(stackDir, 'package.json')).resolve('kuzzle');
  } catch (error) {
    fail(`package "kuzzle" not found from ${stackDir} (${error.message})`);
  }
  return path.dirname(main);
}

// Every Kuzzle file that builds an sdk-es7 client: each must see the wrapper.
const KUZZLE_FILES_USING_SDK_ES7 = [
  'lib/service/storage/7/elasticsearch.js',
  'lib/service/storage/Elasticsearch.js',
];

function presentAsElasticsearch7(result) {
  const body = result && result.body;
  const version = body && body.version;
  if (!version || version.distribution !== 'opensearch') {
    return;
  }
  if (version.number !== PRESENTED_VERSION) {
    if (!presentAsElasticsearch7.logged) {
      presentAsElasticsearch7.logged = true;
      process.stderr.write(
        `${TAG} storage is OpenSearch ${version.number}: presented to Kuzzle as Elasticsearch ${PRESENTED_VERSION}\n`,
      );
    }
    version.opensearch_number = version.number;
    version.number = PRESENTED_VERSION;
  }
}

function wrapInfo(originalInfo) {
  function info(...args) {
    // Callback form: info([params], [options], callback)
    const cbIndex = args.findIndex((arg) => typeof arg === 'function');
    if (cbIndex !== -1) {
      const callback = args[cbIndex];
      args[cbIndex] = function infoCallback(error, result, ...rest) {
        if (!error) {
          presentAsElasticsearch7(result);
        }
        return callback.call(this, error, result, ...rest);
      };
      return originalInfo.apply(this, args);
    }

    // Promise form: info([params], [options]) -> Promise (with .abort())
    const request = originalInfo.apply(this, args);
    if (!request || typeof request.then !== 'function') {
      fail('sdk-es7 Client#info() did not return a promise');
    }
    const wrapped = request.then((result) => {
      presentAsElasticsearch7(result);
      return result;
    });
    if (typeof request.abort === 'function') {
      wrapped.abort = request.abort.bind(request);
    }
    return wrapped;
  }
  info[MARK] = originalInfo;
  return info;
}

function apply() {
  const dist = kuzzleDistDir();
  const patched = new Set();

  for (const relative of KUZZLE_FILES_USING_SDK_ES7) {
    const file = path.join(dist, relative);
    if (!fs.existsSync(file)) {
      fail(`${file} does not exist (Kuzzle's storage layout changed?)`);
    }
    let sdk;
    try {
      sdk = requireFrom(file)('sdk-es7');
    } catch (error) {
      fail(`"sdk-es7" cannot be loaded from ${file} (${error.message})`);
    }
    const Client = sdk && sdk.Client;
    if (typeof Client !== 'function' || !Client.prototype) {
      fail(`"sdk-es7" loaded from ${file} exports no Client class`);
    }
    if (patched.has(Client)) {
      continue;
    }
    const current = Client.prototype.info;
    if (typeof current !== 'function') {
      fail('sdk-es7 Client.prototype.info is not a function');
    }
    if (!current[MARK]) {
      Client.prototype.info = wrapInfo(current);
    }
    if (!Client.prototype.info[MARK]) {
      fail('sdk-es7 Client.prototype.info could not be replaced');
    }
    patched.add(Client);
  }

  if (patched.size === 0) {
    fail('no sdk-es7 client class found');
  }
}

apply();

module.exports = { PRESENTED_VERSION };
