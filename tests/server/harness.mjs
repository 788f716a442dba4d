// Shared by the server tests: start `bifurcate serve` on a free loopback
// port, wait for it, talk to it (the official `openai` client, raw HTTP,
// /metrics), and run `bifurcate generate` as the in-process reference.
import { spawn, execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import OpenAI from 'openai';

export const BIN = process.env.BIFURCATE_BIN;
if (!BIN) throw new Error('BIFURCATE_BIN must name the bifurcate program to test');
const execFileP = promisify(execFile);

// A running server: its URL, its process, its stderr lines (the access log).
export async function startServer(args = []) {
  const proc = spawn(BIN, ['serve', '--port', '0', '--threads', '1', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = [];
  let pending = '';
  let exitCode = null;
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => { exitCode = code; resolve({ code, signal }); }));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not start: ' + lines.join('\n'))), 60000);
    proc.stderr.on('data', (data) => {
      pending += data.toString();
      const parts = pending.split('\n');
      pending = parts.pop();
      for (const line of parts) {
        lines.push(line);
        const m = line.match(/^listening on (http:\/\/[^\s]+)$/);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      }
    });
    exited.then(() => { clearTimeout(timer); reject(new Error('server exited: ' + lines.join('\n') + pending)); });
  });
  const server = {
    url, proc, lines, exited,
    get exitCode() { return exitCode; },
    client: (options = {}) => new OpenAI({ baseURL: url + '/v1', apiKey: 'unused', maxRetries: 0, ...options }),
    async stop(signal = 'SIGTERM') { proc.kill(signal); return exited; },
    async waitReady(timeoutMs = 60000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        try { if ((await fetch(url + '/health')).status === 200) return; } catch { /* not yet */ }
        if (Date.now() > end) throw new Error('server not ready: ' + lines.join('\n'));
        await sleep(20);
      }
    },
    async metrics() { return parseMetrics(await (await fetch(url + '/metrics')).text()); },
    rss() { return rssBytes(proc.pid); },
  };
  await server.waitReady();
  return server;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Prometheus text -> { 'name{labels}': value }.
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out[line.slice(0, i)] = Number(line.slice(i + 1));
  }
  return out;
}

export function rssBytes(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/);
  return Number(m[1]) * 1024;
}

// `bifurcate generate ... --json`: the engine in-process, the reference.
export async function generate(args) {
  const { stdout } = await execFileP(BIN, ['generate', '--json', '--threads', '1', ...args], { maxBuffer: 64 << 20 });
  return JSON.parse(stdout);
}

// `bifurcate logits ... ` (JSON): every position's next-token log-probs, in-process.
export async function logits(args) {
  const { stdout } = await execFileP(BIN, ['logits', '--threads', '1', ...args], { maxBuffer: 64 << 20 });
  return JSON.parse(stdout);
}

// POST a JSON (or raw string) body; returns { status, body (parsed when JSON) }.
export async function post(url, body) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' },
                                 body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: parsed };
}

// The mean log-prob of a completion choice (needs logprobs >= 0).
export const meanLogprob = (choice) =>
  choice.logprobs.token_logprobs.reduce((a, b) => a + b, 0) / choice.logprobs.token_logprobs.length;
