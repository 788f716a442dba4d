// `bifurcate serve` through the official `openai` client: every completions
// feature checked against an independent reference — `bifurcate generate`
// (the engine in-process), the server's own /tokenize, or arithmetic on the
// returned log-probs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, generate, logits, post, meanLogprob } from './harness.mjs';

const PROMPT = 'Once upon a time';
let server, client;

before(async () => {
  server = await startServer(['--max-n', '32']);
  client = server.client();
});
after(async () => {
  const { code } = await server.stop('SIGTERM');
  assert.equal(code, 0, 'exit code after SIGTERM');
});

test('/v1/models lists the built-in model', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ['stories260K']);
});

test('greedy text equals bifurcate generate', async () => {
  const ref = await generate(['-p', PROMPT, '--samples', '1', '--temp', '0', '--max-tokens', '40']);
  const r = await client.completions.create({ model: 'stories260K', prompt: PROMPT, max_tokens: 40, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].text, ref.samples[0].text);
  assert.equal(r.choices[0].finish_reason, ref.samples[0].finish_reason === 'length' ? 'length' : 'stop');
  assert.ok(r.choices[0].text.length > 20);
});

test('n > 1 with a seed: the samples of bifurcate generate, in draw order', async () => {
  const args = ['-p', PROMPT, '--samples', '4', '--temp', '0.9', '--top-k', '0', '--top-p', '1', '--min-p', '0',
                '--seed', '7', '--max-tokens', '24', '--rank', 'none'];
  const ref = await generate(args);
  const r = await client.completions.create({ model: 'stories260K', prompt: PROMPT, n: 4, temperature: 0.9, seed: 7,
                                             max_tokens: 24 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.deepEqual(r.choices.map((c) => c.text), ref.samples.map((s) => s.text));
  assert.ok(new Set(r.choices.map((c) => c.text)).size > 1, 'different samples');
});

test('seed: same seed same text, another seed another text', async () => {
  const req = { model: 'stories260K', prompt: PROMPT, max_tokens: 30, temperature: 1, n: 3 };
  const a = await client.completions.create({ ...req, seed: 11 });
  const b = await client.completions.create({ ...req, seed: 11 });
  const c = await client.completions.create({ ...req, seed: 12 });
  assert.deepEqual(a.choices.map((x) => x.text), b.choices.map((x) => x.text));
  assert.notDeepEqual(a.choices.map((x) => x.text), c.choices.map((x) => x.text));
});

test('best_of returns the best n of the same draws by mean log-prob', async () => {
  const req = { model: 'stories260K', prompt: PROMPT, max_tokens: 20, temperature: 1, seed: 5, logprobs: 0 };
  const all = await client.completions.create({ ...req, n: 6 });
  const best = await client.completions.create({ ...req, n: 2, best_of: 6 });
  const ranked = [...all.choices].sort((x, y) => meanLogprob(y) - meanLogprob(x));
  assert.deepEqual(best.choices.map((c) => c.text), ranked.slice(0, 2).map((c) => c.text));
  assert.deepEqual(best.choices.map((c) => c.index), [0, 1]);
  // Usage counts every sample drawn.
  assert.equal(best.usage.completion_tokens, all.usage.completion_tokens);
  const ref = await generate(['-p', PROMPT, '--samples', '2', '--best-of', '6', '--temp', '1', '--top-k', '0', '--top-p', '1',
                              '--min-p', '0', '--seed', '5', '--max-tokens', '20']);
  assert.deepEqual(best.choices.map((c) => c.text), ref.samples.map((s) => s.text));
});

test('logprobs: tokens, token_logprobs, top_logprobs and text_offset agree with the text and the engine', async () => {
  const r = await client.completions.create({ model: 'stories260K', prompt: PROMPT, max_tokens: 16, temperature: 0,
                                             logprobs: 3 });
  const c = r.choices[0];
  const lp = c.logprobs;
  assert.equal(lp.tokens.join(''), c.text);
  assert.equal(lp.tokens.length, r.usage.completion_tokens);
  let offset = PROMPT.length;
  lp.tokens.forEach((token, i) => {
    assert.equal(lp.text_offset[i], offset);
    offset += Buffer.byteLength(token);
    const alternatives = Object.entries(lp.top_logprobs[i]);
    assert.ok(alternatives.length >= 1 && alternatives.length <= 4);
    assert.equal(lp.top_logprobs[i][token], lp.token_logprobs[i]);
    // Greedy: the chosen token is the most likely one.
    for (const [, value] of alternatives) assert.ok(value <= lp.token_logprobs[i] + 1e-6);
  });
  const ref = await generate(['-p', PROMPT, '--samples', '1', '--temp', '0', '--max-tokens', '16', '--logprobs', '3']);
  ref.samples[0].tokens.forEach((t, i) => assert.ok(Math.abs(t.logprob - lp.token_logprobs[i]) < 1e-4));
  await assert.rejects(client.completions.create({ model: 'stories260K', prompt: PROMPT, logprobs: 21 }),
                       (e) => e.status === 400 && /logprobs/.test(e.message));
});

test('echo prepends the prompt', async () => {
  const req = { model: 'stories260K', prompt: PROMPT, max_tokens: 12, temperature: 0 };
  const plain = await client.completions.create(req);
  const echoed = await client.completions.create({ ...req, echo: true });
  assert.equal(echoed.choices[0].text, PROMPT + plain.choices[0].text);
});

test('echo with logprobs scores the prompt as bifurcate logits does', async () => {
  const req = { model: 'stories260K', prompt: PROMPT, max_tokens: 5, temperature: 0, logprobs: 2 };
  const plain = await client.completions.create(req);
  const echoed = await client.completions.create({ ...req, echo: true });
  const ref = await logits(['-p', PROMPT, '--all', '--top', '2']);
  const lp = echoed.choices[0].logprobs;
  const n = ref.n_tokens;  // the prompt's tokens, BOS included
  assert.equal(lp.tokens.length, n + plain.choices[0].logprobs.tokens.length);
  assert.equal(lp.token_logprobs[0], null);
  assert.equal(lp.top_logprobs[0], null);
  for (let i = 1; i < n; ++i) {
    assert.ok(Math.abs(lp.token_logprobs[i] - ref.positions[i - 1].next_logprob) < 1e-4, `position ${i}`);
    for (const alt of ref.positions[i - 1].top)
      assert.ok(Math.abs(lp.top_logprobs[i][alt.piece] - alt.logprob) < 1e-4, `position ${i} '${alt.piece}'`);
  }
  assert.deepEqual(lp.tokens.slice(n), plain.choices[0].logprobs.tokens);
  assert.deepEqual(lp.token_logprobs.slice(n), plain.choices[0].logprobs.token_logprobs);
});

test('stream with echo and logprobs: the first chunk is the prompt with its own logprobs', async () => {
  const req = { model: 'stories260K', prompt: PROMPT, max_tokens: 6, temperature: 0, logprobs: 2, echo: true, n: 2 };
  const whole = await client.completions.create(req);
  const stream = await client.completions.create({ ...req, stream: true });
  const text = ['', ''], seen = [[], []];
  const lp = [{ tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] },
              { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] }];
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      seen[c.index].push(c);
      text[c.index] += c.text;
      if (!c.logprobs) continue;
      for (const key of Object.keys(lp[c.index])) lp[c.index][key].push(...c.logprobs[key]);
    }
  }
  const n = (await post(server.url + '/tokenize', { content: PROMPT, add_special: true })).body.tokens.length;
  for (const i of [0, 1]) {
    const first = seen[i][0];
    assert.equal(first.text, PROMPT);
    assert.equal(first.logprobs.tokens.length, n, 'the prompt tokens, BOS included');
    assert.equal(first.logprobs.token_logprobs[0], null);
    assert.equal(text[i], whole.choices[i].text);
    assert.deepEqual(lp[i], whole.choices[i].logprobs);  // offsets from 0, as the non-streamed response
  }
});

test('logit_bias: +100 forces a token, -100 bans one (the model\'s own ranking from bifurcate logits)', async () => {
  const ref = await logits(['-p', PROMPT, '--top', '3']);
  const next = ref.positions[ref.positions.length - 1].top;  // after the prompt: the three most likely
  const req = { model: 'stories260K', prompt: PROMPT, max_tokens: 6, temperature: 0, logprobs: 0 };
  const forced = await client.completions.create({ ...req, logit_bias: { [next[2].id]: 100 } });
  assert.deepEqual(forced.choices[0].logprobs.tokens, Array(6).fill(next[2].piece));
  // The reported log-prob is the model's own, not the biased one.
  assert.ok(Math.abs(forced.choices[0].logprobs.token_logprobs[0] - next[2].logprob) < 1e-4);
  const banned = await client.completions.create({ ...req, max_tokens: 1, logit_bias: { [next[0].id]: -100 } });
  assert.equal(banned.choices[0].logprobs.tokens[0], next[1].piece);
  // Sampled: the banned token never comes up.
  const sampled = await client.completions.create({ ...req, temperature: 1.5, seed: 3, n: 4, max_tokens: 40,
                                                    logit_bias: { [next[0].id]: -100 } });
  const unbiased = await client.completions.create({ ...req, temperature: 1.5, seed: 3, n: 4, max_tokens: 40 });
  const count = (r) => r.choices.reduce((a, c) => a + c.logprobs.tokens.filter((t) => t === next[0].piece).length, 0);
  assert.equal(count(sampled), 0);
  assert.ok(count(unbiased) > 0, `'${next[0].piece}' comes up without the bias`);
  await assert.rejects(client.completions.create({ ...req, logit_bias: { 7: 101 } }),
                       (e) => e.status === 400 && e.param === 'logit_bias');
});

test('suffix and response_format are refused by name', async () => {
  await assert.rejects(client.completions.create({ model: 'stories260K', prompt: PROMPT, suffix: ' The end.' }),
                       (e) => e.status === 400 && e.param === 'suffix' && /fill-in-the-middle/.test(e.message));
  await assert.rejects(client.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'hi' }],
                                                        response_format: { type: 'json_object' } }),
                       (e) => e.status === 400 && e.param === 'response_format' && /json_object/.test(e.message));
});

test('stop strings cut the text before them', async () => {
  const req = { model: 'stories260K', prompt: PROMPT, max_tokens: 60, temperature: 0 };
  const full = (await client.completions.create(req)).choices[0].text;
  const at = full.indexOf('Lily');
  assert.ok(at > 0, 'the greedy story names Lily: ' + full);
  const cut = await client.completions.create({ ...req, stop: ['Lily', 'zzz'] });
  assert.equal(cut.choices[0].text, full.slice(0, at));
  assert.equal(cut.choices[0].finish_reason, 'stop');
  const single = await client.completions.create({ ...req, stop: 'Lily' });
  assert.equal(single.choices[0].text, full.slice(0, at));
});

test('usage counts prompt tokens once per prompt, completion tokens over all choices', async () => {
  const tokens = (await post(server.url + '/tokenize', { content: PROMPT, add_special: true })).body.tokens;
  const r = await client.completions.create({ model: 'stories260K', prompt: PROMPT, n: 3, max_tokens: 9,
                                             temperature: 0.8, seed: 1, logprobs: 0 });
  assert.equal(r.usage.prompt_tokens, tokens.length);
  assert.equal(r.usage.completion_tokens, r.choices.reduce((a, c) => a + c.logprobs.tokens.length, 0));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.equal(typeof r.usage.prompt_tokens_details.cached_tokens, 'number');
});

test('a list of prompts, token-array prompts: one set of choices per prompt', async () => {
  const other = 'The little dog';
  const tokens = (await post(server.url + '/tokenize', { content: other, add_special: true })).body.tokens;
  const req = { model: 'stories260K', max_tokens: 10, temperature: 0, n: 2 };
  const both = await client.completions.create({ ...req, prompt: [PROMPT, other] });
  const first = await client.completions.create({ ...req, prompt: PROMPT });
  const byTokens = await client.completions.create({ ...req, prompt: tokens });
  assert.deepEqual(both.choices.map((c) => c.index), [0, 1, 2, 3]);
  assert.deepEqual(both.choices.slice(0, 2).map((c) => c.text), first.choices.map((c) => c.text));
  assert.deepEqual(both.choices.slice(2).map((c) => c.text), byTokens.choices.map((c) => c.text));
  const listOfTokens = await client.completions.create({ ...req, prompt: [tokens] });
  assert.deepEqual(listOfTokens.choices.map((c) => c.text), byTokens.choices.map((c) => c.text));
  assert.equal(both.usage.prompt_tokens, first.usage.prompt_tokens + tokens.length);
});

test('stream: SSE chunks add up to the non-streamed text; include_usage adds a usage chunk', async () => {
  const req = { model: 'stories260K', prompt: PROMPT, max_tokens: 30, temperature: 0.7, seed: 3, n: 2 };
  const whole = await client.completions.create(req);
  const stream = await client.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  const texts = ['', ''];
  const finish = [null, null];
  let usage = null, chunks = 0;
  for await (const chunk of stream) {
    ++chunks;
    if (chunk.usage) {
      assert.deepEqual(chunk.choices, []);
      usage = chunk.usage;
      continue;
    }
    for (const c of chunk.choices) {
      texts[c.index] += c.text;
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
  }
  assert.ok(chunks > 10);
  assert.deepEqual(texts, whole.choices.map((c) => c.text));
  assert.deepEqual(finish, whole.choices.map((c) => c.finish_reason));
  assert.deepEqual(usage, whole.usage);
});

test('stream with logprobs carries each token once', async () => {
  const req = { model: 'stories260K', prompt: PROMPT, max_tokens: 20, temperature: 0, logprobs: 2 };
  const whole = await client.completions.create(req);
  const stream = await client.completions.create({ ...req, stream: true });
  const tokens = [], values = [];
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      if (!c.logprobs) continue;
      tokens.push(...c.logprobs.tokens);
      values.push(...c.logprobs.token_logprobs);
    }
  }
  assert.deepEqual(tokens, whole.choices[0].logprobs.tokens);
  assert.deepEqual(values, whole.choices[0].logprobs.token_logprobs);
});

test('errors surface with their status, type and message', async () => {
  const cases = [
    [{ prompt: PROMPT, n: 'two' }, 400, /'n' must be an integer/],
    [{ prompt: PROMPT, temperature: 5 }, 400, /temperature/],
    [{ prompt: PROMPT, n: 1000 }, 400, /'n' must be in \[1, 32\]/],
    [{ prompt: PROMPT, max_tokens: 1e9 }, 400, /max_tokens/],
    [{ prompt: PROMPT, best_of: 2, n: 3 }, 400, /best_of/],
    [{ prompt: PROMPT, best_of: 3, stream: true }, 400, /best_of.*stream/],
    [{ prompt: 'word '.repeat(600) }, 400, /has \d+ tokens; the model's context length is 512/],
    [{ prompt: [1, 2, 100000] }, 400, /outside the vocabulary/],
    [{ prompt: {} }, 400, /prompt/],
    [{}, 400, /'prompt' is required/],
  ];
  for (const [body, status, message] of cases) {
    await assert.rejects(client.completions.create({ model: 'stories260K', ...body }), (e) => {
      assert.ok(e instanceof OpenAI.APIError, String(e));
      assert.equal(e.status, status, JSON.stringify(body) + ': ' + e.message);
      assert.match(e.message, message);
      assert.equal(e.type, 'invalid_request_error');
      return true;
    });
  }
  await assert.rejects(client.completions.create({ model: 'gpt-4', prompt: PROMPT }),
                       (e) => e instanceof OpenAI.BadRequestError && e.code === 'model_not_found');
  await assert.rejects(client.get('/no/such/route'), (e) => e instanceof OpenAI.NotFoundError);
});

test('/tokenize and /detokenize round-trip (llama.cpp shapes)', async () => {
  const t = await post(server.url + '/tokenize', { content: PROMPT, with_pieces: true });
  assert.equal(t.status, 200);
  assert.equal(t.body.tokens.map((x) => x.piece).join('').trim(), PROMPT);
  const ids = t.body.tokens.map((x) => x.id);
  const d = await post(server.url + '/detokenize', { tokens: ids });
  assert.deepEqual(d, { status: 200, body: { content: PROMPT } });
  const withBos = await post(server.url + '/tokenize', { content: PROMPT, add_special: true });
  assert.equal(withBos.body.tokens.length, ids.length + 1);
  assert.equal((await post(server.url + '/detokenize', { tokens: [-1] })).status, 400);
});

test('/health and /metrics', async () => {
  assert.equal((await fetch(server.url + '/health')).status, 200);
  const before = await server.metrics();
  const r = await client.completions.create({ model: 'stories260K', prompt: PROMPT, max_tokens: 7, temperature: 0 });
  const m = await server.metrics();
  const key = 'bifurcate_http_requests_total{route="/v1/completions",status="200"}';
  assert.equal(m[key], before[key] + 1);
  assert.equal(m.bifurcate_generated_tokens_total - before.bifurcate_generated_tokens_total, r.usage.completion_tokens);
  assert.equal(m.bifurcate_prompt_tokens_total - before.bifurcate_prompt_tokens_total, r.usage.prompt_tokens);
  assert.equal(m.bifurcate_time_to_first_token_seconds_count, before.bifurcate_time_to_first_token_seconds_count + 1);
  assert.equal(m.bifurcate_inter_token_latency_seconds_count - before.bifurcate_inter_token_latency_seconds_count,
               r.usage.completion_tokens - 1);
  assert.equal(m.bifurcate_kv_bytes_used - m.bifurcate_kv_bytes_cached, 0, 'no KV held by running requests');
  assert.ok(m.bifurcate_kv_bytes_budget > 0);
  // The access log: one line for the request, with its token counts.
  const line = server.lines.findLast((l) => l.includes('POST /v1/completions 200'));
  assert.match(line, new RegExp(`prompt=${r.usage.prompt_tokens} cached=\\d+ generated=${r.usage.completion_tokens} ttft=[\\d.]+ms total=`));
});
