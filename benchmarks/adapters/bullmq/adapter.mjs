#!/usr/bin/env node
// The BullMQ adapter of the redistimers benchmarks (see ../PROTOCOL.md): the same
// `info`, `schedule` and `worker` commands, options, JSON shapes, Redis keys, out file and
// exit codes as the Python adapters built on ../_common.py, in JavaScript for Node.js >= 20.
//
//     node benchmarks/adapters/bullmq/adapter.mjs info
//     node benchmarks/adapters/bullmq/adapter.mjs schedule --redis-url URL --plan PLAN.json [--threads K] [--bulk]
//     node benchmarks/adapters/bullmq/adapter.mjs worker --redis-url URL --name NAME --topics T1,T2
//          --concurrency C --profile tuned|default --out FILE [--durable]
//
// Install (what the harness does; pinned by package.json + package-lock.json beside this file):
//
//     mkdir -p benchmarks/.cache/bullmq
//     cp benchmarks/adapters/bullmq/package.json benchmarks/adapters/bullmq/package-lock.json benchmarks/.cache/bullmq/
//     npm ci --prefix benchmarks/.cache/bullmq --ignore-scripts --no-audit --no-fund
//
// (--ignore-scripts skips msgpackr-extract's optional native build check: its prebuilt
// binary comes as an ordinary optional package, and msgpackr works without it.)
//
// Module resolution: ESM ignores NODE_PATH, so the packages are loaded with createRequire
// from the folder named by $BULLMQ_MODULES, else <this file>/../../.cache/bullmq/node_modules
// (= benchmarks/.cache/bullmq/node_modules). When they are not there, every command prints
// one line on stderr and exits 2.
//
// How the protocol maps onto BullMQ:
// * a topic is a BullMQ queue (default prefix "bull"); a timer is a job named "t" with the
//   plan's payload as data and the plan's id as jobId. BullMQ refuses integer-like ids and
//   ids with ":"; such a timer gets BullMQ's own id and carries the plan id as data.id.
// * a timer due in the future is a delayed job: {delay: ceil(due) - now, timestamp: now},
//   with `now` read once, so BullMQ's delayed score is exactly ceil(due) (never early); a
//   timer already due is a plain job (straight to the wait list).
// * schedule --threads K: K concurrent async producers, each on its own Redis connection
//   (its queues share it), each adding a strided share of the plan with queue.add.
//   --bulk: queue.addBulk in chunks of BULK_CHUNK timers (grouped by topic), one
//   pipelined round trip (not a transaction, in 6.x) per chunk and topic; with
//   --threads K as well, K such producers.
// * worker: one BullMQ Worker per topic, all in this process, created with autorun false;
//   `bench:ready:<NAME>` is set once every worker's connection is up, then they are run.
//   --concurrency is the Worker's `concurrency` (per topic). `--profile tuned` uses it
//   (TUNED below when the flag is absent); `--profile default` is BullMQ as it comes:
//   concurrency 1, completed and failed jobs kept, 30 s locks and stalled checks.
//   On SIGTERM/SIGINT: worker.close() (waits for the running handlers), then the out file.
//   A worker killed with SIGKILL leaves its fetched jobs locked: they go back to wait when
//   a stalled check finds their lock expired, so they fire again within about
//   lockDuration + 2 * stalledInterval of the kill (10-15 s tuned, up to a minute default).
// * fired_ms: Date.now() plus the sub-millisecond fraction of the monotonic clock, so the
//   integer part is the wall clock Python's time.time() reads and the value is never
//   below Date.now().
//
// Redis: BullMQ 6 refuses Redis < 5.0.0 and recommends >= 6.2.0; on Redis < 7.0.8 its
// shortest blocking wait is 2 ms instead of 1 ms.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MODULES = path.resolve(
  process.env.BULLMQ_MODULES || path.join(HERE, '..', '..', '.cache', 'bullmq', 'node_modules'),
);
const require = createRequire(import.meta.url);

const BULK_CHUNK = 1000;
const JOB_NAME = 't';
const PROGRESS_MS = 50;
const CLOSE_TIMEOUT_MS = 20000;

// What `--profile tuned` uses (concurrency: unless --concurrency is given). Chosen by
// draining 20,000 due timers on a 2-core machine (Redis 6.2, Node 20), see the commit log:
// * concurrency 100: the worker keeps that many jobs in flight on its connection, each
//   completion fetching the next job in the same script call. 50-300 drain alike (BullMQ
//   costs ~70 us of Node CPU and ~57 us of Redis CPU a timer however many are in flight);
//   1 (the default) drains at about a third of the rate, with one round trip a timer;
//   1000 costs ~30% more Node CPU a timer.
// * removeOnComplete/removeOnFail {count: 0}: delete each job as it finishes, the Worker
//   option of BullMQ's "Auto-removal of jobs" guide (at Worker level it must be an object:
//   a bare `true` reaches the Lua script as a boolean and every completion fails there,
//   BullMQ 6.7.0). Keeping them costs ~5% more Redis CPU a timer, and memory.
// * lockDuration/stalledInterval 5 s (30 s default): how soon the jobs of a killed worker
//   are fetched again; the same trade as redistimers' tuned 5 s lease. Locks are renewed
//   every lockDuration / 2 and stalled checks stay on: they make several workers and the
//   crash workload safe, so skipStalledCheck/skipLockRenewal stay false.
// * enableAutoPipelining stays off: batching the workers' script calls made no
//   difference to the drain rate or Node CPU a timer here (slightly worse if anything).
// * drainDelay (seconds an empty queue's blocking fetch waits) stays at 5: it only sets
//   how often an idle worker polls; new and delayed jobs wake it through the marker key.
const TUNED = {
  concurrency: 100,
  removeOnComplete: { count: 0 },
  removeOnFail: { count: 0 },
  lockDuration: 5000,
  stalledInterval: 5000,
  maxStalledCount: 1,
  drainDelay: 5,
  skipStalledCheck: false,
  skipLockRenewal: false,
  enableAutoPipelining: false,
};

// BullMQ's own defaults (Worker constructor, 6.x), what `--profile default` uses.
const DEFAULTS = {
  concurrency: 1,
  removeOnComplete: false,
  removeOnFail: false,
  lockDuration: 30000,
  stalledInterval: 30000,
  maxStalledCount: 1,
  drainDelay: 5,
  skipStalledCheck: false,
  skipLockRenewal: false,
  enableAutoPipelining: false,
};

const NOTES =
  'One BullMQ queue and Worker per topic; a timer due later is a delayed job (delay = due - ' +
  'now, jobId = timer id), one already due a plain job. Tuned: Worker concurrency = ' +
  `--concurrency per topic (${TUNED.concurrency}), finished jobs removed at once ({count: 0}), ` +
  '5 s lockDuration and stalledInterval so the jobs of a killed worker return within ' +
  '~10-15 s; locks, lock renewal and stalled checks stay on. Default: BullMQ as it comes ' +
  '(concurrency 1, finished jobs kept, 30 s locks and stalled checks). Each timer is a job ' +
  'hash, event-stream entries and one moveToFinished script that also fetches the next ' +
  `job. Bulk: Queue.addBulk, pipelined chunks of ${BULK_CHUNK}. Needs Redis >= 5.0.0.`;

// ---------------------------------------------------------------- small helpers

function die(message, code = 2) {
  // Exit 2 and 3 say why in one line; a failure (1) keeps its stack.
  const text = String(message);
  process.stderr.write(`${code === 1 ? text : text.split('\n')[0]}\n`);
  process.exit(code);
}

function loadModules() {
  try {
    const bullmq = require(path.join(MODULES, 'bullmq'));
    const ioredis = require(path.join(MODULES, 'ioredis'));
    const IORedis = ioredis.default || ioredis; // the constructor, however it is exported
    return { bullmq, IORedis };
  } catch (err) {
    die(
      `bullmq is not installed in ${MODULES} (${err.code || err.message}): ` +
        'npm ci --prefix benchmarks/.cache/bullmq (see adapter.mjs) or set BULLMQ_MODULES',
    );
  }
}

function packageVersion(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(MODULES, name, 'package.json'), 'utf8')).version;
  } catch {
    return null;
  }
}

function printJson(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function nowMs() {
  // Wall clock (the one time.time() reads) at millisecond resolution, plus the monotonic
  // clock's fraction of a millisecond: floor(result) == Date.now() always.
  const wall = Date.now();
  const fine = performance.timeOrigin + performance.now();
  return wall + (fine - Math.floor(fine));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- arguments (argparse-like)

const USAGE =
  'usage: adapter.mjs {info,schedule,worker} ...\n' +
  '  schedule --redis-url URL --plan PLAN [--threads K] [--bulk]\n' +
  '  worker --redis-url URL --name NAME --topics T1,T2 [--concurrency C] ' +
  '[--profile {tuned,default}] --out FILE [--durable]';

function usageError(message) {
  process.stderr.write(`${USAGE}\nadapter.mjs: error: ${message}\n`);
  process.exit(2);
}

const SPECS = {
  info: {},
  schedule: {
    '--redis-url': { key: 'redisUrl', required: true },
    '--plan': { key: 'plan', required: true },
    '--threads': { key: 'threads', type: 'int', default: 1 },
    '--bulk': { key: 'bulk', flag: true },
  },
  worker: {
    '--redis-url': { key: 'redisUrl', required: true },
    '--name': { key: 'name', required: true },
    '--topics': { key: 'topics', required: true },
    '--concurrency': { key: 'concurrency', type: 'int', default: null },
    '--profile': { key: 'profile', choices: ['tuned', 'default'], default: 'tuned' },
    '--out': { key: 'out', required: true },
    '--durable': { key: 'durable', flag: true },
  },
};

function parseArgs(argv) {
  const command = argv[0];
  if (!command) usageError('the following arguments are required: command');
  const spec = SPECS[command];
  if (!spec) usageError(`argument command: invalid choice: '${command}'`);
  const args = { command };
  for (const opt of Object.values(spec)) args[opt.key] = opt.flag ? false : opt.default ?? null;
  for (let i = 1; i < argv.length; i++) {
    let name = argv[i];
    let value;
    const eq = name.indexOf('=');
    if (name.startsWith('--') && eq > 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const opt = spec[name];
    if (!opt) usageError(`unrecognized arguments: ${argv[i]}`);
    if (opt.flag) {
      if (value !== undefined) usageError(`argument ${name}: ignored explicit argument '${value}'`);
      args[opt.key] = true;
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) usageError(`argument ${name}: expected one argument`);
      value = argv[++i];
    }
    if (opt.type === 'int') {
      if (!/^[-+]?\d+$/.test(value.trim())) usageError(`argument ${name}: invalid int value: '${value}'`);
      value = parseInt(value, 10);
    }
    if (opt.choices && !opt.choices.includes(value)) {
      usageError(`argument ${name}: invalid choice: '${value}' (choose from ${opt.choices.join(', ')})`);
    }
    args[opt.key] = value;
  }
  const missing = Object.entries(spec)
    .filter(([, opt]) => opt.required && args[opt.key] === null)
    .map(([name]) => name);
  if (missing.length) usageError(`the following arguments are required: ${missing.join(', ')}`);
  if (command === 'worker') args.topics = args.topics.split(',').filter((t) => t);
  return args;
}

// ---------------------------------------------------------------- Redis URL -> ioredis options

function redisOptions(url) {
  let u;
  try {
    u = new URL(url);
  } catch {
    die(`invalid --redis-url: ${url}`);
  }
  const opts = {};
  if (u.username) opts.username = decodeURIComponent(u.username);
  if (u.password) opts.password = decodeURIComponent(u.password);
  let db = u.searchParams.get('db');
  if (u.protocol === 'unix:') {
    opts.path = decodeURIComponent(u.pathname);
  } else if (u.protocol === 'redis:' || u.protocol === 'rediss:') {
    opts.host = u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1';
    opts.port = u.port ? Number(u.port) : 6379;
    const fromPath = u.pathname.replace(/^\//, '');
    if (fromPath) db = fromPath;
    if (u.protocol === 'rediss:') opts.tls = {};
  } else {
    die(`unsupported --redis-url scheme: ${u.protocol}`);
  }
  if (db !== null && db !== '') opts.db = Number(db);
  return opts;
}

// ---------------------------------------------------------------- plans

// Reads PLAN.json into columns without building one JavaScript string of the whole file
// (V8 caps strings at ~512 MiB, which a 10,000,000-timer plan exceeds): the timers array
// is walked in the Buffer and each element parsed on its own; other values whole.
function loadPlan(file) {
  const buf = fs.readFileSync(file);
  const n = buf.length;
  const ids = [];
  const topicOf = [];
  const dues = [];
  const topics = [];
  const topicIndex = new Map();
  let payload = {};
  let i = 0;

  const bad = (what) => die(`malformed plan ${file} at byte ${i}: ${what}`);
  const ws = () => {
    while (i < n) {
      const c = buf[i];
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) i++;
      else break;
    }
  };
  const stringEnd = (j) => {
    for (j++; j < n; j++) {
      const c = buf[j];
      if (c === 0x5c) j++;
      else if (c === 0x22) return j + 1;
    }
    return bad('unterminated string');
  };
  const valueEnd = (j) => {
    const c = buf[j];
    if (c === 0x22) return stringEnd(j);
    if (c === 0x7b || c === 0x5b) {
      let depth = 0;
      for (; j < n; j++) {
        const d = buf[j];
        if (d === 0x22) j = stringEnd(j) - 1;
        else if (d === 0x7b || d === 0x5b) depth++;
        else if (d === 0x7d || d === 0x5d) {
          depth--;
          if (depth === 0) return j + 1;
        }
      }
      return bad('unterminated value');
    }
    while (j < n) {
      const d = buf[j];
      if (d === 0x2c || d === 0x5d || d === 0x7d || d === 0x20 || d === 0x0a || d === 0x0d || d === 0x09) break;
      j++;
    }
    return j;
  };
  const parseValue = () => {
    const end = valueEnd(i);
    const value = JSON.parse(buf.toString('utf8', i, end));
    i = end;
    return value;
  };
  const addTimer = (timer) => {
    if (!Array.isArray(timer) || timer.length < 3) bad('a timer is not [id, topic, due]');
    const topic = String(timer[1]);
    let t = topicIndex.get(topic);
    if (t === undefined) {
      t = topics.length;
      topics.push(topic);
      topicIndex.set(topic, t);
    }
    ids.push(String(timer[0]));
    topicOf.push(t);
    dues.push(Number(timer[2]));
  };

  ws();
  if (buf[i] !== 0x7b) bad('expected {');
  i++;
  ws();
  if (buf[i] === 0x7d) i++;
  else {
    for (;;) {
      ws();
      if (buf[i] !== 0x22) bad('expected a key');
      const key = parseValue();
      ws();
      if (buf[i] !== 0x3a) bad('expected :');
      i++;
      ws();
      if (key === 'timers') {
        if (buf[i] !== 0x5b) bad('timers is not an array');
        i++;
        ws();
        if (buf[i] === 0x5d) i++;
        else {
          for (;;) {
            ws();
            addTimer(parseValue());
            ws();
            if (buf[i] === 0x2c) {
              i++;
              continue;
            }
            if (buf[i] === 0x5d) {
              i++;
              break;
            }
            bad('expected , or ] in timers');
          }
        }
      } else {
        const value = parseValue();
        if (key === 'payload') payload = value;
      }
      ws();
      if (buf[i] === 0x2c) {
        i++;
        continue;
      }
      if (buf[i] === 0x7d) break;
      bad('expected , or }');
    }
  }
  return { ids, topicOf, dues, topics, payload };
}

// BullMQ refuses custom job ids that are integers or contain ":" (job.js validateOptions).
function usableJobId(id) {
  return id !== '' && `${parseInt(id, 10)}` !== id && !id.includes(':');
}

// ---------------------------------------------------------------- info

function info() {
  const version = packageVersion('bullmq');
  if (!version) loadModules(); // prints why and exits 2
  printJson({
    library: 'bullmq',
    version,
    tuned: TUNED,
    defaults: DEFAULTS,
    multi_worker_safe: true,
    bulk_schedule: true,
    notes: NOTES,
    runtime: `node ${process.version}`,
    dependencies: { ioredis: packageVersion('ioredis') },
    redis_minimum: '5.0.0 (6.2.0 recommended)',
  });
}

// ---------------------------------------------------------------- schedule

async function schedule(args) {
  const { bullmq, IORedis } = loadModules();
  if (args.threads < 1) usageError('argument --threads: must be at least 1');
  const plan = loadPlan(args.plan);
  const conn = redisOptions(args.redisUrl);
  const n = plan.ids.length;
  const k = Math.max(1, Math.min(args.threads, n || 1));
  const { payload } = plan;

  // Connections and queues first: only the scheduling itself is timed.
  const producers = [];
  for (let p = 0; p < k; p++) {
    const client = new IORedis({ ...conn, maxRetriesPerRequest: null, lazyConnect: false });
    const queues = plan.topics.map((topic) => new bullmq.Queue(topic, { connection: client }));
    producers.push({ client, queues });
  }
  await Promise.all(producers.flatMap((p) => p.queues.map((q) => q.waitUntilReady())));

  const jobOf = (idx) => {
    const id = plan.ids[idx];
    const due = Math.ceil(plan.dues[idx]);
    const now = Date.now();
    const opts = due > now ? { delay: due - now, timestamp: now } : {};
    if (usableJobId(id)) return { name: JOB_NAME, data: payload, opts: { ...opts, jobId: id } };
    return { name: JOB_NAME, data: { ...payload, id }, opts };
  };

  const one = async ({ queues }, p) => {
    for (let idx = p; idx < n; idx += k) {
      const job = jobOf(idx);
      await queues[plan.topicOf[idx]].add(job.name, job.data, job.opts);
    }
  };
  const bulk = async ({ queues }, p) => {
    let chunk = [];
    const flush = async () => {
      const byTopic = new Map();
      for (const idx of chunk) {
        const t = plan.topicOf[idx];
        if (!byTopic.has(t)) byTopic.set(t, []);
        byTopic.get(t).push(jobOf(idx));
      }
      chunk = [];
      for (const [t, jobs] of byTopic) await queues[t].addBulk(jobs);
    };
    for (let idx = p; idx < n; idx += k) {
      chunk.push(idx);
      if (chunk.length >= BULK_CHUNK) await flush();
    }
    if (chunk.length) await flush();
  };

  const start = performance.now();
  await Promise.all(producers.map((producer, p) => (args.bulk ? bulk : one)(producer, p)));
  const seconds = (performance.now() - start) / 1000;

  await Promise.all(producers.flatMap((p) => p.queues.map((q) => q.close())));
  await Promise.all(producers.map((p) => p.client.quit().catch(() => p.client.disconnect())));
  printJson({ scheduled: n, seconds });
}

// ---------------------------------------------------------------- worker

class Recorder {
  constructor(args, IORedis, conn) {
    this.name = args.name;
    this.out = args.out;
    this.records = [];
    this.client = new IORedis({ ...conn, maxRetriesPerRequest: null });
    this.client.on('error', () => {});
    this.log = args.durable ? fs.openSync(`${args.out}.log`, 'a') : null;
    this.timer = null;
    this.last = -1;
    this.busy = false;
  }

  record(id, topic) {
    const row = [id, topic, nowMs()];
    this.records.push(row);
    if (this.log !== null) fs.writeSync(this.log, `${JSON.stringify(row)}\n`);
  }

  async ready() {
    await this.client.set(`bench:ready:${this.name}`, 1);
    this.timer = setInterval(() => this.report(), PROGRESS_MS);
  }

  report() {
    const count = this.records.length;
    if (this.busy || count === this.last) return;
    this.busy = true;
    this.client
      .set(`bench:progress:${this.name}`, count)
      .then(() => {
        this.last = count;
      })
      .catch(() => {})
      .finally(() => {
        this.busy = false;
      });
  }

  async finish() {
    if (this.timer !== null) clearInterval(this.timer);
    const records = this.records.slice();
    fs.writeFileSync(this.out, JSON.stringify({ fired: records, pid: process.pid }));
    if (this.log !== null) fs.closeSync(this.log);
    await this.client.set(`bench:progress:${this.name}`, records.length);
    await this.client.quit().catch(() => this.client.disconnect());
  }
}

// $BULLMQ_TUNED: a JSON object merged over TUNED, for trying other settings by hand.
function tunedOverrides() {
  const text = process.env.BULLMQ_TUNED;
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    return die(`BULLMQ_TUNED is not a JSON object: ${text}`);
  }
}

function idOf(job) {
  // A custom id is never integer-like; BullMQ's own ids are, and then data.id is the plan's.
  const id = String(job.id);
  if (`${parseInt(id, 10)}` === id && job.data && typeof job.data.id === 'string') return job.data.id;
  return id;
}

async function worker(args) {
  const { bullmq, IORedis } = loadModules();
  if (!args.topics.length) usageError('argument --topics: no topic given');
  const conn = redisOptions(args.redisUrl);
  const profile = args.profile === 'tuned' ? { ...TUNED, ...tunedOverrides() } : { ...DEFAULTS };
  if (args.profile === 'tuned' && args.concurrency !== null) {
    if (args.concurrency < 1) usageError('argument --concurrency: must be at least 1');
    profile.concurrency = args.concurrency;
  }
  const recorder = new Recorder(args, IORedis, conn);
  const workers = [];
  let stopping = null;

  const stop = () => {
    if (stopping) return stopping;
    stopping = (async () => {
      const closed = Promise.all(workers.map((w) => w.close().catch(() => {})));
      const timedOut = await Promise.race([closed.then(() => false), sleep(CLOSE_TIMEOUT_MS).then(() => true)]);
      if (timedOut) process.stderr.write('bullmq: workers did not close in time, writing records anyway\n');
      await recorder.finish();
      process.exit(0);
    })().catch((err) => die(`bullmq: stop failed: ${err && err.message}`, 1));
    return stopping;
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  const options = {
    connection: { ...conn, enableAutoPipelining: profile.enableAutoPipelining },
    autorun: false,
    concurrency: profile.concurrency,
    lockDuration: profile.lockDuration,
    stalledInterval: profile.stalledInterval,
    maxStalledCount: profile.maxStalledCount,
    drainDelay: profile.drainDelay,
    skipStalledCheck: profile.skipStalledCheck,
    skipLockRenewal: profile.skipLockRenewal,
  };
  // Worker-level KeepJobs must be an object ({count: 0} = remove at once); a bare `true`
  // reaches the Lua script as a boolean and fails there (BullMQ 6.7.0).
  if (profile.removeOnComplete) options.removeOnComplete = profile.removeOnComplete;
  if (profile.removeOnFail) options.removeOnFail = profile.removeOnFail;

  let lastError = 0;
  for (const topic of args.topics) {
    const w = new bullmq.Worker(
      topic,
      async (job) => {
        recorder.record(idOf(job), topic);
      },
      options,
    );
    w.on('error', (err) => {
      const now = Date.now();
      if (now - lastError > 1000 && !stopping) {
        lastError = now;
        process.stderr.write(`bullmq worker error (${topic}): ${err && err.message}\n`);
      }
    });
    workers.push(w);
  }
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  if (stopping) return;
  await recorder.ready();
  for (const w of workers) {
    w.run().catch((err) => process.stderr.write(`bullmq worker stopped: ${err && err.message}\n`));
  }
}

// ---------------------------------------------------------------- main

const args = parseArgs(process.argv.slice(2));
const commands = { info, schedule, worker };
Promise.resolve(commands[args.command](args)).catch((err) => die(`bullmq adapter: ${err && (err.stack || err.message)}`, 1));
