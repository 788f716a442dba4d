#!/usr/bin/env node
// Drives a running `bifurcate serve` over HTTP with the shared-prefix serving
// workload that `bifurcate bench-serve --workload-out FILE` writes (one JSON
// document per line and arrival rate), the same requests bench-serve runs in
// process: prompt token ids, n samples of exactly max_tokens (ignore_eos),
// temperature 0.8, seed = spec.seed + request index, streamed.
//
//   node bench/serve_http.mjs --url http://127.0.0.1:8080 --workload workload.json [--json out.json] [--label tree]
//                             [--server-pid PID]
//   node bench/serve_http.mjs --report DIR...   # the markdown table: medians over runs, one DIR per run
//                                               # (scripts/bench-serve.sh -o DIR writes one)
//
// Measured at the client: TTFT = request sent -> first SSE chunk of the
// request; inter-token latency = gap between consecutive chunks of one
// choice (a chunk carries one token's text, or several when text is held
// back for a partial UTF-8 character); throughput = generated tokens (usage)
// / wall time from the first request sent to the last response ended; cache
// hit rate = cached prompt tokens / prompt tokens (usage). Percentiles are
// nearest-rank, as bench-serve's. Server and client share this machine's
// CPUs, so each is accounted apart: the CPU seconds this client used, and
// the server's (from /proc/PID/stat, with --server-pid) over the same run;
// in process, the CPU seconds of the whole bench-serve process (model load
// included), which scripts/bench-serve.sh records beside its JSON.
// No dependencies beyond Node.js 18.
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';

function args(argv) {
  const out = { positional: [] };
  for (let i = 0; i < argv.length; ++i) {
    if (argv[i].startsWith('--')) out[argv[i].slice(2)] = argv[i + 1]?.startsWith('--') ? true : argv[++i] ?? true;
    else out.positional.push(argv[i]);
  }
  return out;
}

function percentile(values, p) {
  if (values.length === 0) return 0;
  const v = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * v.length);
  return v[Math.min(v.length - 1, Math.max(0, rank - 1))];
}

// POSTs `body` and resolves with the response stream. node:http rather than
// fetch: fetch gives up on a response whose headers take over 300 s, and a
// stream's headers wait for its first token, behind every queued prefill.
function postStream(url, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(url + '/v1/completions', { method: 'POST', headers: { 'content-type': 'application/json' } },
                             resolve);
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

// One streamed request: chunk times per choice, usage.
async function run(url, body) {
  const t0 = performance.now();
  const res = await postStream(url, body);
  if (res.statusCode !== 200) {
    let text = '';
    for await (const bytes of res) text += bytes;
    throw new Error(`HTTP ${res.statusCode}: ${text}`);
  }
  const times = [];
  let first = 0, usage = null, buffer = '';
  const decoder = new TextDecoder();
  for await (const bytes of res) {
    const now = performance.now();
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!event.startsWith('data: ') || event === 'data: [DONE]') continue;
      const chunk = JSON.parse(event.slice(6));
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) {
        if (!first) first = now;
        (times[c.index] ??= []).push(now);
      }
    }
  }
  return { ttft: first - t0, times, usage, end: performance.now() };
}

// utime + stime of a process in seconds (Linux: clock ticks of 1/100 s).
function processCpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function drive(url, workload, label, serverPid) {
  const { spec, requests } = workload;
  const serverCpu0 = serverPid ? processCpuSeconds(serverPid) : 0;
  const clientCpu0 = process.cpuUsage();
  const start = performance.now();
  const results = await Promise.all(requests.map(async (r, i) => {
    await new Promise((resolve) => setTimeout(resolve, r.arrival_seconds * 1000));
    return run(url, { prompt: r.prompt_tokens, n: r.n, max_tokens: r.max_tokens, ignore_eos: true, temperature: 0.8,
                      seed: spec.seed + i, stream: true, stream_options: { include_usage: true } });
  }));
  const wall = (Math.max(...results.map((r) => r.end)) - start) / 1000;
  const clientCpu = process.cpuUsage(clientCpu0);
  const serverCpu = serverPid ? processCpuSeconds(serverPid) - serverCpu0 : null;
  const ttft = results.map((r) => r.ttft);
  const itl = results.flatMap((r) => r.times.flatMap((t) => t.slice(1).map((x, k) => x - t[k])));
  const generated = results.reduce((a, r) => a + r.usage.completion_tokens, 0);
  const prompt = results.reduce((a, r) => a + r.usage.prompt_tokens, 0);
  const cached = results.reduce((a, r) => a + r.usage.prompt_tokens_details.cached_tokens, 0);
  return { mode: label, transport: 'http', rate: spec.rate, requests: requests.length, wall_seconds: wall,
           ttft_ms_p50: percentile(ttft, 50), ttft_ms_p90: percentile(ttft, 90), ttft_ms_p99: percentile(ttft, 99),
           itl_ms_p50: percentile(itl, 50), itl_ms_p90: percentile(itl, 90), itl_ms_p99: percentile(itl, 99),
           generated_tokens: generated, tokens_per_second: generated / wall, cache_hit_rate: prompt ? cached / prompt : 0,
           server_cpu_seconds: serverCpu, client_cpu_seconds: (clientCpu.user + clientCpu.system) / 1e6 };
}

const median = (values) => {
  const v = [...values].sort((a, b) => a - b);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

// One row per mode, transport and rate: the median of each figure over the
// runs (one DIR each); HTTP / in-process is the median of each run's own
// ratio (the two ran minutes apart, under the same load), with its range.
function report(dirs) {
  const runs = dirs.map((dir) => {
    // In process: one file per mode, and that process's CPU seconds ("user system").
    const modes = ['tree', 'replicated'].map((m) => JSON.parse(readFileSync(join(dir, `inprocess-${m}.json`), 'utf8')));
    const inprocess = { workload: modes[0].workload, runs: modes.flatMap((doc, i) => {
      const [user, system] = readFileSync(join(dir, `inprocess-${['tree', 'replicated'][i]}.cpu`), 'utf8').trim().split(/\s+/).map(Number);
      return doc.runs.map((r) => ({ ...r, server_cpu_seconds: user + system }));
    }) };
    const rows = [...inprocess.runs.map((r) => ({ ...r, transport: 'in-process' })),
                  ...['tree', 'replicated'].flatMap((m) => JSON.parse(readFileSync(join(dir, `http-${m}.json`), 'utf8')).runs)];
    for (const r of rows) {
      const base = rows.find((x) => x.transport === 'in-process' && x.mode === r.mode && x.rate === r.rate);
      r.tokens_per_cpu_second = r.server_cpu_seconds ? r.generated_tokens / r.server_cpu_seconds : null;
      r.ratio = r.transport === 'http' && base ? r.tokens_per_second / base.tokens_per_second : null;
      r.cpu_ratio = r.transport === 'http' && base && r.tokens_per_cpu_second && base.tokens_per_cpu_second
        ? r.tokens_per_cpu_second / base.tokens_per_cpu_second : null;
    }
    return { workload: inprocess.workload, rows };
  });
  const w = runs[0].workload;
  const f = (x, d) => (x === null || x === undefined || Number.isNaN(x) ? '' : Number(x).toFixed(d));
  const lines = [
    `Workload: ${w.groups} groups x ${w.questions} requests, system ${w.system_tokens} + question ` +
    `${w.question_tokens} tokens, n ${w.samples}, ${w.max_tokens} tokens each. Medians of ${runs.length} runs.`, '',
    '| mode | transport | rate | wall s | TTFT p50 / p90 / p99 ms | ITL p50 / p90 / p99 ms | tokens/s | cache hit | server CPU s | client CPU s | tokens / server CPU s | HTTP / in-process tokens/s (range) | HTTP / in-process tokens per CPU s (range) |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|'];
  for (const first of runs[0].rows) {
    const same = runs.map((run) => run.rows.find((r) => r.mode === first.mode && r.transport === first.transport &&
                                                          r.rate === first.rate)).filter(Boolean);
    const m = (key) => (same.every((r) => typeof r[key] === 'number') ? median(same.map((r) => r[key])) : null);
    const spread = (key) => {
      const v = same.map((r) => r[key]).filter((x) => x !== null && x !== undefined);
      return v.length ? `${f(median(v), 3)} (${f(Math.min(...v), 3)}-${f(Math.max(...v), 3)})` : '';
    };
    lines.push(`| ${first.mode} | ${first.transport} | ${first.rate || 'all'} | ${f(m('wall_seconds'), 2)} | ` +
               `${f(m('ttft_ms_p50'), 0)} / ${f(m('ttft_ms_p90'), 0)} / ${f(m('ttft_ms_p99'), 0)} | ` +
               `${f(m('itl_ms_p50'), 1)} / ${f(m('itl_ms_p90'), 1)} / ${f(m('itl_ms_p99'), 1)} | ` +
               `${f(m('tokens_per_second'), 1)} | ${f(m('cache_hit_rate'), 3)} | ${f(m('server_cpu_seconds'), 1)} | ` +
               `${f(m('client_cpu_seconds'), 1)} | ${f(m('tokens_per_cpu_second'), 2)} | ${spread('ratio')} | ` +
               `${spread('cpu_ratio')} |`);
  }
  console.log(lines.join('\n'));
}

const a = args(process.argv.slice(2));
if (a.report) {
  report([a.report, ...a.positional]);
} else {
  if (!a.url || !a.workload) throw new Error('usage: serve_http.mjs --url URL --workload FILE [--json OUT] [--label NAME]');
  const runs = [];
  for (const line of readFileSync(a.workload, 'utf8').split('\n').filter(Boolean)) {
    const figures = await drive(a.url, JSON.parse(line), a.label ?? 'server', a['server-pid']);
    console.error(`${figures.mode} rate ${figures.rate}: ${figures.tokens_per_second.toFixed(1)} tokens/s, ` +
                  `TTFT p50 ${figures.ttft_ms_p50.toFixed(0)} ms, cache hit ${figures.cache_hit_rate.toFixed(3)}`);
    runs.push(figures);
  }
  if (a.json) writeFileSync(a.json, JSON.stringify({ runs }, null, 2) + '\n');
}
