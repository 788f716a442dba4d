// 32 clients at once, a bounded number of requests each, prompts sharing
// system-prompt prefixes: every response equals the same request run alone
// (greedy and seeded, streamed and not), none fails, /metrics adds up to the
// responses, no KV stays held, and the server's RSS returns to its idle level.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep } from './harness.mjs';

const CLIENTS = 32;
const REQUESTS_PER_CLIENT = 4;
const SYSTEMS = [
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.',
  'Once upon a time, there was a big dog named Max. Max liked to run and jump in the garden.',
  'One day, a small bird flew over the tall trees. The bird was looking for food for her babies.',
  'Once upon a time, there was a little girl named Lily. She had a red ball and a blue hat.',
];
const USERS = [' One day,', ' Her mom said', ' Then', ' The sun was', ' They', ' Suddenly,', ' After that,', ' At night'];

// The request of client c's j-th turn; its key names it for the reference.
function request(c, j) {
  const k = c * REQUESTS_PER_CLIENT + j;
  const prompt = SYSTEMS[(c + j) % SYSTEMS.length] + USERS[k % USERS.length];
  const seeded = k % 2 === 1;
  return {
    key: `${(c + j) % SYSTEMS.length}/${k % USERS.length}/${seeded ? k : 'greedy'}/${k % 3 === 0}`,
    stream: k % 3 === 0,
    body: { model: 'stories260K', prompt, max_tokens: 24,
            ...(seeded ? { temperature: 0.8, seed: k, n: 2 } : { temperature: 0 }) },
  };
}

// Choice texts in index order, and the usage, streamed or not.
async function run(client, req) {
  if (!req.stream) {
    const r = await client.completions.create(req.body);
    return { texts: r.choices.map((c) => c.text), usage: r.usage };
  }
  const stream = await client.completions.create({ ...req.body, stream: true, stream_options: { include_usage: true } });
  const texts = [];
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) texts[c.index] = (texts[c.index] ?? '') + c.text;
  }
  return { texts, usage };
}

let server;
before(async () => { server = await startServer(); });
after(async () => { assert.equal((await server.stop()).code, 0); });

test('32 concurrent clients get what each request gets alone', async () => {
  const client = server.client();
  const reference = new Map();
  for (let c = 0; c < CLIENTS; ++c) {
    for (let j = 0; j < REQUESTS_PER_CLIENT; ++j) {
      const req = request(c, j);
      if (!reference.has(req.key)) reference.set(req.key, (await run(client, req)).texts);
    }
  }
  await sleep(200);
  const idleRss = server.rss();
  const before = await server.metrics();

  let failures = 0, completionTokens = 0, cachedTokens = 0, promptTokens = 0, compared = 0;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
    const own = server.client();
    for (let j = 0; j < REQUESTS_PER_CLIENT; ++j) {
      const req = request(c, j);
      try {
        const { texts, usage } = await run(own, req);
        assert.deepEqual(texts, reference.get(req.key), `client ${c} request ${j} (${req.key})`);
        ++compared;
        completionTokens += usage.completion_tokens;
        promptTokens += usage.prompt_tokens;
        cachedTokens += usage.prompt_tokens_details.cached_tokens;
      } catch (e) {
        ++failures;
        console.error(e);
      }
    }
  }));
  const seconds = (Date.now() - t0) / 1000;
  console.log(`${CLIENTS * REQUESTS_PER_CLIENT} requests from ${CLIENTS} clients in ${seconds.toFixed(2)} s; ` +
              `prompt ${promptTokens}, cached ${cachedTokens}, generated ${completionTokens} tokens`);
  assert.equal(failures, 0);
  assert.equal(compared, CLIENTS * REQUESTS_PER_CLIENT);
  assert.ok(cachedTokens > 0, 'overlapping system prompts were served from the prefix cache');

  const m = await server.metrics();
  const ok = 'bifurcate_http_requests_total{route="/v1/completions",status="200"}';
  assert.equal(m[ok] - before[ok], CLIENTS * REQUESTS_PER_CLIENT);
  assert.equal(m.bifurcate_generated_tokens_total - before.bifurcate_generated_tokens_total, completionTokens);
  assert.equal(m.bifurcate_prompt_tokens_total - before.bifurcate_prompt_tokens_total, promptTokens);
  assert.equal(m.bifurcate_prompt_cached_tokens_total - before.bifurcate_prompt_cached_tokens_total, cachedTokens);
  assert.equal(m.bifurcate_http_generations_in_flight, 0);
  assert.equal(m.bifurcate_requests_running, 0);
  assert.equal(m.bifurcate_requests_queued, 0);
  assert.equal(m.bifurcate_kv_bytes_used - m.bifurcate_kv_bytes_cached, 0, 'no KV held by finished requests');

  // RSS back to idle: what 32 connections and their requests allocated is
  // returned (allocator arenas keep some; 16 MiB allows for them, far below
  // what a leak of every request's KV or text would show).
  // Under ASan the allocator's quarantine keeps freed memory by design; there
  // LeakSanitizer checks instead, when the server exits (exit code 0 below).
  await sleep(300);
  const rss = server.rss();
  console.log(`RSS idle ${(idleRss / 2 ** 20).toFixed(1)} MiB, after ${(rss / 2 ** 20).toFixed(1)} MiB`);
  if (process.env.BIFURCATE_SANITIZED !== '1') assert.ok(rss <= idleRss + 16 * 2 ** 20, `RSS ${rss} vs idle ${idleRss}`);
});
