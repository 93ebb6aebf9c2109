// The realm every workflow script runs in, set up before the script: only standard
// ECMAScript built-ins plus the workflow primitives. `h` holds the engine's natives.
(function (h, metaJson, argsJson) {
  'use strict';
  const G = globalThis;
  const define = (name, value) =>
    Object.defineProperty(G, name, { value, writable: true, configurable: true, enumerable: false });

  // Only ECMAScript's own globals stay (no clocks, no I/O, no host objects).
  const keep = new Set([
    'globalThis', 'Infinity', 'NaN', 'undefined', 'eval', 'isFinite', 'isNaN', 'parseFloat',
    'parseInt', 'decodeURI', 'decodeURIComponent', 'encodeURI', 'encodeURIComponent', 'escape',
    'unescape', 'AggregateError', 'Array', 'ArrayBuffer', 'BigInt', 'BigInt64Array',
    'BigUint64Array', 'Boolean', 'DataView', 'Date', 'Error', 'EvalError', 'FinalizationRegistry',
    'Float16Array', 'Float32Array', 'Float64Array', 'Function', 'Int8Array', 'Int16Array',
    'Int32Array', 'InternalError', 'Iterator', 'JSON', 'Map', 'Math', 'Number', 'Object',
    'Promise', 'Proxy', 'RangeError', 'ReferenceError', 'Reflect', 'RegExp', 'Set', 'String',
    'Symbol', 'SyntaxError', 'TypeError', 'Uint8Array', 'Uint8ClampedArray', 'Uint16Array',
    'Uint32Array', 'URIError', 'WeakMap', 'WeakRef', 'WeakSet', 'DisposableStack',
    'AsyncDisposableStack', 'SuppressedError',
  ]);
  for (const name of Object.getOwnPropertyNames(G)) {
    if (!keep.has(name)) {
      try { delete G[name]; } catch (_) { /* not configurable: keep */ }
    }
  }

  // No code from strings.
  const noFunction = function Function() {
    throw new EvalError('new Function() is unavailable in workflow scripts: write the function in the script');
  };
  noFunction.prototype = Function.prototype;
  for (const f of [function () {}, async function () {}, function* () {}, async function* () {}]) {
    Object.defineProperty(Object.getPrototypeOf(f), 'constructor', { value: noFunction });
  }
  define('Function', noFunction);
  define('eval', {
    eval() {
      throw new EvalError('eval() is unavailable in workflow scripts: write the code in the script');
    },
  }.eval);

  // No clocks or randomness: a resumed run must make the same calls.
  const RealDate = Date;
  const dateMessage =
    'Date.now() / new Date() are unavailable in workflow scripts (breaks resume). ' +
    'Pass the time in through args, or use new Date(timestamp).';
  const SafeDate = function Date(...a) {
    if (!new.target || a.length === 0) throw new Error(dateMessage);
    return Reflect.construct(RealDate, a, new.target);
  };
  SafeDate.prototype = RealDate.prototype;
  Object.defineProperty(RealDate.prototype, 'constructor', { value: SafeDate, writable: true, configurable: true });
  SafeDate.UTC = RealDate.UTC;
  SafeDate.parse = RealDate.parse;
  SafeDate.now = function now() { throw new Error(dateMessage); };
  define('Date', SafeDate);
  Math.random = function random() {
    throw new Error(
      'Math.random() is unavailable in workflow scripts (breaks resume). ' +
      'Derive variety from the data instead, e.g. the item index.');
  };

  const describe = (e) => {
    try {
      if (e instanceof Error) return e.message;
      return String(e);
    } catch (_) {
      return 'an unprintable value';
    }
  };
  const show = (v) => {
    if (typeof v === 'string') return v;
    try {
      const s = JSON.stringify(v);
      return s === undefined ? String(v) : s;
    } catch (_) {
      return String(v);
    }
  };
  const kind = (v) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v);
  const MAX = h.maxItems;
  const reject = Promise.reject.bind(Promise);

  // Not an `async function`: the native returns the call's promise, and one promise per call
  // is cheaper than two. Every failure still arrives as a rejection, as from an async function.
  define('agent', function agent(prompt, opts) {
    try {
      if (typeof prompt !== 'string') {
        throw new TypeError(`agent(prompt, opts): prompt must be a string, got ${kind(prompt)}`);
      }
      if (opts !== undefined && opts !== null && (typeof opts !== 'object' || Array.isArray(opts))) {
        throw new TypeError(`agent(prompt, opts): opts must be an object, got ${kind(opts)}`);
      }
      return h.agent(prompt, opts === undefined || opts === null ? '' : JSON.stringify(opts));
    } catch (e) {
      return reject(e);
    }
  });

  // `h.gather(n, start, failed, attach, items?, stages?)` starts `start(i)` for i in 0..n, in
  // order, and resolves with their results in order once all have settled; for a pipeline,
  // each result goes on through `stages` first (item by item, without a barrier; a null
  // stops an item). A start or stage that throws, or a result that rejects, is
  // `failed(i, error, stage)` instead. The engine runs the loop: an agent() promise hands its
  // result on without a promise reaction; any other value that may be a promise comes back
  // here to `attach`, which reports through `h.slot` when it settles.
  const attach = (p, g, i, s) => {
    Promise.resolve(p).then((v) => h.slot(g, i, s, true, v), (e) => h.slot(g, i, s, false, e));
  };

  define('parallel', async function parallel(thunks) {
    if (!Array.isArray(thunks)) {
      throw new TypeError(`parallel(thunks) expects an array of functions, got ${kind(thunks)}`);
    }
    if (thunks.length > MAX) {
      throw new RangeError(
        `parallel() got ${thunks.length} items; at most ${MAX} are allowed per call. Split the work into batches.`);
    }
    return h.gather(thunks.length, (i) => {
      const thunk = thunks[i];
      if (typeof thunk !== 'function') {
        throw new TypeError(`not a function but ${kind(thunk)}: pass () => agent(...), not agent(...)`);
      }
      return thunk();
    }, (i, e) => {
      h.log(`parallel[${i}] failed: ${describe(e)}`, 'warn');
      return null;
    }, attach);
  });

  define('pipeline', async function pipeline(items, ...stages) {
    if (!Array.isArray(items)) {
      throw new TypeError(`pipeline(items, ...stages) expects an array of items, got ${kind(items)}`);
    }
    if (items.length > MAX) {
      throw new RangeError(
        `pipeline() got ${items.length} items; at most ${MAX} are allowed per call. Split the work into batches.`);
    }
    stages.forEach((stage, s) => {
      if (typeof stage !== 'function') {
        throw new TypeError(`pipeline(): stage ${s} is ${kind(stage)}, not a function`);
      }
    });
    // Each item as it was when the pipeline started, whatever a stage does to the array.
    const list = items.slice();
    const first = stages[0];
    return h.gather(list.length, first === undefined ? (i) => list[i] : (i) => first(list[i], list[i], i),
      (i, e, s) => {
        h.log(`pipeline[${i}] stage ${s} failed: ${describe(e)}`, 'warn');
        return null;
      }, attach, list, stages);
  });

  define('phase', function phase(title) { h.phase(show(title)); });
  define('log', function log(message) { h.log(show(message), 'info'); });

  const limits = h.budget();
  const usd = Object.freeze({
    total: limits[2],
    spent() { return h.budget()[3]; },
    remaining() {
      const b = h.budget();
      return b[2] === null ? Infinity : Math.max(0, b[2] - b[3]);
    },
  });
  define('budget', Object.freeze({
    total: limits[0],
    spent() { return h.budget()[1]; },
    remaining() {
      const b = h.budget();
      return b[0] === null ? Infinity : Math.max(0, b[0] - b[1]);
    },
    usd,
  }));

  define('workflow', async function workflow(ref, args) {
    if (typeof ref !== 'string' && (ref === null || typeof ref !== 'object')) {
      throw new TypeError(`workflow(nameOrRef, args): expected a name or {scriptPath}, got ${kind(ref)}`);
    }
    return h.workflow(JSON.stringify(ref), args === undefined ? '' : JSON.stringify(args));
  });

  const freeze = (v) => {
    if (v && typeof v === 'object') {
      Object.values(v).forEach(freeze);
      Object.freeze(v);
    }
    return v;
  };
  define('meta', freeze(JSON.parse(metaJson)));
  define('args', argsJson === '' ? undefined : JSON.parse(argsJson));

  return function settle(p) {
    p.then(
      (v) => {
        if (typeof v === 'function') {
          h.fail('workflow result cannot be a function', '');
          return;
        }
        let json;
        try {
          json = v === undefined ? '' : JSON.stringify(v);
          if (json === undefined) json = '';
        } catch (e) {
          h.fail(`workflow result cannot be serialized as JSON: ${describe(e)}`, '');
          return;
        }
        h.done(json);
      },
      (e) => {
        let name = 'Error';
        let stack = '';
        try {
          if (e instanceof Error) {
            name = e.name;
            stack = String(e.stack || '');
          } else {
            name = 'Uncaught';
          }
        } catch (_) { /* keep the defaults */ }
        h.fail(`${name}: ${describe(e)}`, stack);
      });
  };
})
