// Bad input and bad clients: malformed JSON, wrong types, huge values, a
// 10 MB body, a client that stalls after its headers, one that disconnects
// mid-stream, a full queue, and SIGTERM while streams run. The server
// answers each with the right status, frees what the request held, and
// keeps serving everyone else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import OpenAI from 'openai';
import { startServer, post, sleep } from './harness.mjs';

const LONG = { model: 'stories260K', prompt: 'Once upon a time', n: 32, max_tokens: 480, ignore_eos: true,
               temperature: 1, seed: 1 };

async function until(what, check, timeoutMs = 10000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(20);
  }
}

test('malformed and ill-typed requests get 400 naming the problem; the server keeps serving', async () => {
  const server = await startServer(['--max-n', '32']);
  try {
    const url = server.url + '/v1/completions';
    let r = await post(url, '{"prompt": "Once", "max_tokens": ');
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'invalid_json');
    assert.equal(r.body.error.type, 'invalid_request_error');
    r = await post(url, '[1, 2]');
    assert.equal(r.status, 400);
    assert.match(r.body.error.message, /JSON object/);
    const cases = [
      [{ prompt: 5 }, 'prompt'],
      [{ prompt: 'x', max_tokens: '10' }, 'max_tokens'],
      [{ prompt: 'x', max_tokens: 2.5 }, 'max_tokens'],
      [{ prompt: 'x', stop: 3 }, 'stop'],
      [{ prompt: 'x', stop: [''] }, 'stop'],
      [{ prompt: 'x', stream: 'yes' }, 'stream'],
      [{ prompt: 'x', logprobs: true }, 'logprobs'],
      [{ prompt: 'x', top_p: 0 }, 'top_p'],
      [{ prompt: 'x', seed: 'abc' }, 'seed'],
      [{ prompt: 'x', n: 1e12 }, 'n'],
      [{ prompt: 'x', n: 100000 }, 'n'],
      [{ prompt: 'x', max_tokens: 1e15 }, 'max_tokens'],
      [{ prompt: 'x', best_of: 100000 }, 'best_of'],
      [{ prompt: ['x', 7] }, 'prompt'],
      [{ prompt: 'x', stream_options: { include_usage: true } }, 'stream_options'],
    ];
    for (const [body, param] of cases) {
      r = await post(url, body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.error.param, param, JSON.stringify(body) + ' -> ' + r.body.error.message);
    }
    r = await post(server.url + '/tokenize', { content: 7 });
    assert.equal(r.status, 400);
    r = await post(url, { prompt: 'Once', max_tokens: 3 });
    assert.equal(r.status, 200);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

test('a 10 MB body gets 413; a client stalled after its headers is dropped without blocking others', async () => {
  const server = await startServer(['--read-timeout', '1']);
  try {
    const big = JSON.stringify({ prompt: 'x'.repeat(10 * 1000 * 1000) });
    const r = await post(server.url + '/v1/completions', big);
    assert.equal(r.status, 413);
    assert.equal(r.body.error.type, 'invalid_request_error');

    const { port } = new URL(server.url);
    const stalled = net.connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => stalled.on('connect', resolve));
    const t0 = Date.now();
    // The server answers 400 once --read-timeout passes (or closes the connection).
    let answer = '';
    const closed = new Promise((resolve) => {
      stalled.on('data', (d) => { answer += d.toString(); if (answer.includes('"}}')) resolve(Date.now() - t0); });
      stalled.on('close', () => resolve(Date.now() - t0));
    });
    stalled.on('error', () => {});
    stalled.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"pro');
    const partial = net.connect(Number(port), '127.0.0.1');
    partial.on('error', () => {});
    partial.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Le');
    const ok = await server.client().completions.create({ model: 'stories260K', prompt: 'Hi', max_tokens: 4 });
    assert.equal(ok.choices.length, 1);
    assert.ok(Date.now() - t0 < 900, 'served while the other clients stall');
    const ms = await closed;
    assert.ok(ms >= 900 && ms < 5000, `the stalled client was dropped after ${ms} ms`);
    assert.match(answer, /^HTTP\/1.1 400 .*stalled past --read-timeout/s);
    partial.destroy();
    stalled.destroy();
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

test('a client that disconnects mid-stream cancels its request; KV returns to idle', async () => {
  const server = await startServer(['--max-n', '32']);
  try {
    const idle = await server.metrics();
    const controller = new AbortController();
    const stream = await server.client().completions.create({ ...LONG, stream: true }, { signal: controller.signal });
    let chunks = 0;
    try {
      for await (const chunk of stream) {
        void chunk;
        if (++chunks === 5) { controller.abort(); break; }
      }
    } catch { /* the client reports its own abort */ }
    assert.equal(chunks, 5);
    await until('the request to end', async () => (await server.metrics()).bifurcate_http_generations_in_flight === 0);
    const m = await server.metrics();
    assert.equal(m.bifurcate_kv_bytes_used - m.bifurcate_kv_bytes_cached,
                 idle.bifurcate_kv_bytes_used - idle.bifurcate_kv_bytes_cached);
    assert.equal(m.bifurcate_requests_running, 0);
    await until('the access log line', async () => server.lines.some((l) => l.includes('POST /v1/completions 200')));
    const line = server.lines.find((l) => l.includes('POST /v1/completions 200'));
    assert.match(line, / cancelled$/);
    const generated = Number(line.match(/generated=(\d+)/)[1]);
    assert.ok(generated < 32 * 480, `stopped early: ${generated} tokens`);
    // The server still serves.
    const r = await server.client().completions.create({ model: 'stories260K', prompt: 'Hi', max_tokens: 3 });
    assert.equal(r.choices.length, 1);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

test('a full queue answers 429', async () => {
  // The KV budget (16 MiB) holds one long request (32 x 481 tokens in 32-token blocks, 10.5 MB
  // of KV) but not two: a second waits in the queue (which holds 1), a third is refused.
  const server = await startServer(['--max-n', '32', '--max-queue', '1', '--kv-budget-gib', '0.015625']);
  try {
    const controller = new AbortController();
    const stream = await server.client().completions.create({ ...LONG, stream: true }, { signal: controller.signal });
    const iterator = stream[Symbol.asyncIterator]();
    await iterator.next();
    const waiting = server.client().completions.create({ ...LONG, seed: 2 }, { signal: controller.signal })
      .catch(() => {});
    await until('the second request to queue', async () => (await server.metrics()).bifurcate_requests_queued === 1);
    await assert.rejects(server.client().completions.create({ model: 'stories260K', prompt: 'Hi', max_tokens: 3 }),
                         (e) => e instanceof OpenAI.RateLimitError && /queue is full/.test(e.message));
    controller.abort();
    await waiting;
    await until('the stream to end', async () => (await server.metrics()).bifurcate_http_generations_in_flight === 0);
  } finally {
    assert.equal((await server.stop()).code, 0);
  }
});

test('SIGTERM while streaming: new work gets 503, streams end with their finish events and [DONE], exit 0', async () => {
  const server = await startServer(['--max-n', '32', '--drain-seconds', '1.5']);
  const client = server.client();
  // Five long streams: more work than the drain allows, even on a fast machine.
  const streams = await Promise.all([1, 2, 3, 4, 5].map(async (seed) => {
    const finished = new Set();
    const stream = await client.completions.create({ ...LONG, seed, stream: true });
    return { finished, done: (async () => {
      for await (const chunk of stream) for (const c of chunk.choices) if (c.finish_reason) finished.add(c.index);
    })() };
  }).map((p, i) => (i === 0 ? p : p.catch((e) => ({ error: e })))));
  const first = streams[0];
  await sleep(50);
  server.proc.kill('SIGTERM');
  await until('draining', async () => (await fetch(server.url + '/health')).status === 503, 5000);
  const refused = await post(server.url + '/v1/completions', { prompt: 'Hi', max_tokens: 3 });
  assert.equal(refused.status, 503);
  assert.equal(refused.body.error.code, 'server_draining');
  await first.done;  // no error: the stream ended with [DONE]
  assert.equal(first.finished.size, 32, 'every choice got its finish_reason');
  for (const s of streams.slice(1)) {
    if (s.error) continue;  // refused while draining (its headers came after SIGTERM) is also clean
    await s.done;
    assert.equal(s.finished.size, 32);
  }
  const { code } = await server.exited;
  assert.equal(code, 0);
  assert.ok(server.lines.some((l) => l.startsWith('received SIGTERM')));
});
