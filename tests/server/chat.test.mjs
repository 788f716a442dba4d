// /v1/chat/completions through the official `openai` client: the prompt is
// the conversation rendered with the chat template (stories260K has none:
// ChatML; or a --chat-template file), checked against `bifurcate generate
// --chat`, which renders and runs the same conversation in-process.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, generate, post } from './harness.mjs';

const SYSTEM = 'You are a storyteller.';
const USER = 'Once upon a time';
const MESSAGES = [{ role: 'system', content: SYSTEM }, { role: 'user', content: USER }];
const TEMPLATES = `${process.env.BIFURCATE_TESTDATA_DIR}/chat-templates`;
const PHI = `${TEMPLATES}/microsoft-Phi-3.5-mini-instruct.jinja`;
// The shared templates that render tools (Hermes, Qwen, Llama 3.1) write
// prompts longer than stories260K's 512-token context; this one renders the
// tools as the tool-use templates do, through tojson.
const TOOLS_TEMPLATE = "{% if tools %}tools: {{ tools | tojson }}\n{% endif %}" +
  "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

let server, client;
before(async () => { server = await startServer(); client = server.client(); });
after(async () => { assert.equal((await server.stop()).code, 0); });

test('greedy chat equals bifurcate generate --chat (ChatML fallback)', async () => {
  const ref = await generate(['--chat', '--system', SYSTEM, '-p', USER, '--samples', '1', '--temp', '0', '--max-tokens', '30']);
  const r = await client.chat.completions.create({ model: 'stories260K', messages: MESSAGES, max_tokens: 30,
                                                  temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, ref.samples[0].text);
  assert.equal(r.usage.prompt_tokens, ref.stats.prompt_tokens);
  assert.ok(server.lines.some((l) => l.includes('has no tokenizer.chat_template')));
  // Content given as text parts renders the same.
  const parts = await client.chat.completions.create({
    model: 'stories260K', max_tokens: 30, temperature: 0,
    messages: [{ role: 'system', content: [{ type: 'text', text: SYSTEM }] }, { role: 'user', content: USER }] });
  assert.equal(parts.choices[0].message.content, r.choices[0].message.content);
});

test('n, seed and logprobs in chat format', async () => {
  const req = { model: 'stories260K', messages: MESSAGES, max_tokens: 12, temperature: 0.9, seed: 4, n: 3,
                logprobs: true, top_logprobs: 2 };
  const r = await client.chat.completions.create(req);
  const again = await client.chat.completions.create(req);
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1, 2]);
  assert.deepEqual(r.choices.map((c) => c.message.content), again.choices.map((c) => c.message.content));
  const ref = await generate(['--chat', '--system', SYSTEM, '-p', USER, '--samples', '3', '--temp', '0.9', '--top-k', '0',
                              '--top-p', '1', '--min-p', '0', '--seed', '4', '--max-tokens', '12', '--rank', 'none']);
  assert.deepEqual(r.choices.map((c) => c.message.content), ref.samples.map((s) => s.text));
  for (const c of r.choices) {
    const content = c.logprobs.content;
    assert.equal(content.map((t) => t.token).join(''), c.message.content);
    for (const t of content) {
      assert.deepEqual(t.bytes, [...Buffer.from(t.token)]);
      assert.equal(t.top_logprobs.length, 2);
      assert.ok(t.logprob <= 0);
      assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
    }
  }
  assert.equal(r.usage.completion_tokens, r.choices.reduce((a, c) => a + c.logprobs.content.length, 0));
});

test('stream: chat.completion.chunk deltas add up to the message', async () => {
  const req = { model: 'stories260K', messages: MESSAGES, max_tokens: 25, temperature: 0 };
  const whole = await client.chat.completions.create(req);
  const stream = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = '', role = null, finish = null, usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) { usage = chunk.usage; continue; }
    assert.equal(chunk.object, 'chat.completion.chunk');
    const d = chunk.choices[0].delta;
    if (d.role) role = d.role;
    if (d.content) text += d.content;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(role, 'assistant');
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.deepEqual(usage, whole.usage);
});

test('chat errors surface with status and message', async () => {
  const cases = [
    [{ messages: [] }, /messages/],
    [{ messages: [{ content: 'hi' }] }, /role/],
    [{ messages: [{ role: 'user', content: 5 }] }, /content/],
    [{ messages: MESSAGES, top_logprobs: 3 }, /logprobs/],
    [{ messages: MESSAGES, top_logprobs: 30, logprobs: true }, /top_logprobs/],
  ];
  for (const [body, message] of cases) {
    await assert.rejects(client.chat.completions.create({ model: 'stories260K', ...body }),
                         (e) => e instanceof OpenAI.BadRequestError && message.test(e.message));
  }
});

test('--chat-template FILE overrides the model template', async () => {
  const phi = await startServer(['--chat-template', PHI]);
  try {
    const ref = await generate(['--chat', '--chat-template', PHI, '--system', SYSTEM, '-p', USER, '--samples', '1',
                                '--temp', '0', '--max-tokens', '20']);
    const r = await phi.client().chat.completions.create({ model: 'stories260K', messages: MESSAGES, max_tokens: 20,
                                                          temperature: 0 });
    assert.equal(r.choices[0].message.content, ref.samples[0].text);
    assert.equal(r.usage.prompt_tokens, ref.stats.prompt_tokens);
    const chatml = await client.chat.completions.create({ model: 'stories260K', messages: MESSAGES, max_tokens: 20,
                                                         temperature: 0 });
    assert.notEqual(r.usage.prompt_tokens, chatml.usage.prompt_tokens, 'a different prompt format');
  } finally {
    assert.equal((await phi.stop()).code, 0);
  }
});

// The prompt a conversation renders to, by jinja2 itself (the test data's
// reference_render.py, transformers' rules): the independent reference.
function jinjaRender(template, messages, tools) {
  const dir = mkdtempSync(join(tmpdir(), 'bf-chat-'));
  writeFileSync(join(dir, 'conv.json'), JSON.stringify([{ name: 'c', messages, ...(tools ? { tools } : {}) }]));
  const out = JSON.parse(execFileSync('python3', [`${TEMPLATES}/reference_render.py`, template, join(dir, 'conv.json')]));
  return out.find((r) => r.add_generation_prompt).text;
}

test('tools reach the chat template, tool_choice none withholds them', async () => {
  // Keys in sorted order: the server parses the body with nlohmann::json,
  // which sorts object keys, so a template's tojson prints them sorted.
  const tools = [{ function: { description: 'weather', name: 'get_weather',
                               parameters: { properties: { city: { type: 'string' } }, required: ['city'],
                                             type: 'object' } }, type: 'function' }];
  const messages = [{ role: 'user', content: 'Weather in Paris?' }];
  const template = join(mkdtempSync(join(tmpdir(), 'bf-tools-')), 'tools.jinja');
  writeFileSync(template, TOOLS_TEMPLATE);
  const server2 = await startServer(['--chat-template', template]);
  try {
    const c = server2.client();
    const req = { model: 'stories260K', messages, max_tokens: 12, temperature: 0 };
    const expected = jinjaRender(template, messages, tools);
    assert.match(expected, /get_weather/);
    const tokens = (await post(server2.url + '/tokenize', { content: expected, add_special: !expected.startsWith('<s>'),
                                                           parse_special: true })).body.tokens;
    const same = await c.completions.create({ model: 'stories260K', prompt: tokens, max_tokens: 12, temperature: 0 });
    const r = await c.chat.completions.create({ ...req, tools });
    assert.equal(r.usage.prompt_tokens, tokens.length);
    assert.equal(r.choices[0].message.content, same.choices[0].text);
    const auto = await c.chat.completions.create({ ...req, tools, tool_choice: 'auto' });
    assert.equal(auto.usage.prompt_tokens, tokens.length);
    const none = await c.chat.completions.create({ ...req, tools, tool_choice: 'none' });
    const without = await c.chat.completions.create(req);
    assert.equal(none.usage.prompt_tokens, without.usage.prompt_tokens);
    assert.ok(without.usage.prompt_tokens < tokens.length);
    for (const [body, param] of [[{ tools, tool_choice: 'required' }, 'tool_choice'],
                                 [{ tools, tool_choice: { type: 'function', function: { name: 'get_weather' } } }, 'tool_choice'],
                                 [{ tools: [{ type: 'function' }] }, 'tools']]) {
      await assert.rejects(c.chat.completions.create({ ...req, ...body }),
                           (e) => e.status === 400 && e.param === param, JSON.stringify(body));
    }
  } finally {
    assert.equal((await server2.stop()).code, 0);
  }
});
