#!/usr/bin/env python3
"""Replicas behind HAProxy with prefix affinity (README "One machine to
several"), tested end to end on loopback with the real server and the real
balancer: scripts/cluster.sh starts K `bifurcate serve` replicas on the
built-in model and HAProxy with deploy/haproxy/haproxy.cfg.

  1. Cache hit rate on a shared-prefix workload: through the balancer with
     prefix affinity, on a single server, and through the balancer with
     round robin (each on prompts no earlier run has seen). Affinity must
     keep >= 90% of the single server's hit rate and beat round robin.
  2. SIGTERM one replica under load: it drains; every request succeeds.
  3. SIGKILL one replica under load: only requests in flight on it may
     fail; the balancer marks it down within its health-check window.
  4. `cluster.sh down` leaves none of the processes it started.

Usage: cluster_test.py --repo DIR --bin build/bifurcate --work DIR
Exit 0 on success; prints every measured figure."""
import argparse, http.client, json, os, random, signal, socket, subprocess, sys, threading, time
import urllib.error, urllib.request

WORDS = ("once upon a time there was a little girl named lily she liked to play in the park with her "
         "friend tom one day they found a big red ball under a tree the sun was warm and the birds "
         "sang happy songs mom said it was time to go home so they ran back").split()


def log(*args):
    print(*args, flush=True)


def free_base_port(count):
    """A base port P such that P..P+count and P+324 are all free."""
    for _ in range(200):
        base = random.randint(20000, 40000)
        ports = list(range(base, base + count + 1)) + [base + 324]
        try:
            socks = []
            for p in ports:
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))
                socks.append(s)
            for s in socks:
                s.close()
            return base
        except OSError:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range found")


def post(url, body, timeout=120):
    """(status, parsed body or error text, served_by header)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read()), r.headers.get("X-Served-By")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), e.headers.get("X-Served-By")
    except (urllib.error.URLError, ConnectionError, socket.timeout, OSError) as e:
        return 0, str(e), None


def system_prompt(tag, group):
    rng = random.Random(f"{tag}/{group}")
    return f"[{tag} {group}] " + " ".join(rng.choice(WORDS) for _ in range(160))


MODEL = {}  # "id": the served model's id, read from /v1/models once the cluster is up


def request_body(tag, group, i, max_tokens):
    question = f" question {i}: what did {random.Random(f'{tag}{group}{i}').choice(WORDS)} do next?"
    return {"model": MODEL["id"], "prompt": system_prompt(tag, group) + question, "max_tokens": max_tokens,
            "temperature": 0}


def run_workload(url, tag, groups, per_group, max_tokens=8, concurrent_groups=True):
    """Each group's requests in order (the first fills the cache, the rest can
    hit it), the groups side by side. Returns a list of result dicts."""
    results, lock = [], threading.Lock()

    def one_group(g):
        for i in range(per_group):
            status, body, served_by = post(url + "/v1/completions", request_body(tag, g, i, max_tokens))
            r = {"group": g, "i": i, "status": status, "served_by": served_by, "body": body}
            with lock:
                results.append(r)

    threads = [threading.Thread(target=one_group, args=(g,)) for g in range(groups)]
    for t in threads:
        t.start()
        if not concurrent_groups:
            t.join()
    for t in threads:
        t.join()
    return results


def hit_rate(results):
    prompt = cached = 0
    for r in results:
        assert r["status"] == 200, f"request failed: {r['status']} {str(r['body'])[:300]}"
        usage = r["body"]["usage"]
        prompt += usage["prompt_tokens"]
        cached += (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        assert r["body"]["choices"] and isinstance(r["body"]["choices"][0]["text"], str)
    return cached / prompt


class Cluster:
    def __init__(self, args, base, balance="prefix", k=3):
        self.args, self.base, self.dir = args, base, os.path.join(args.work, f"cluster-{balance}")
        self.cmd = [os.path.join(args.repo, "scripts/cluster.sh")]
        self.opts = ["-k", str(k), "--port", str(base), "--balance", balance, "--dir", self.dir]
        self.url = f"http://127.0.0.1:{base}"
        self.started_pids = []

    def run(self, verb):
        env = dict(os.environ, BIFURCATE_BIN=self.args.bin)
        subprocess.run(self.cmd + [verb] + self.opts, check=True, cwd=self.args.repo, env=env)

    def up(self):
        self.run("up")
        self.started_pids = [self.pid(n) for n in os.listdir(self.dir) if n.endswith(".pid")]
        with urllib.request.urlopen(self.url + "/v1/models", timeout=10) as r:
            MODEL["id"] = json.loads(r.read())["data"][0]["id"]

    def down(self):
        self.run("down")
        left = [p for p in self.started_pids if p and os.path.exists(f"/proc/{p}")]
        assert not left, f"cluster.sh down left processes {left}"

    def pid(self, name):
        with open(os.path.join(self.dir, name if name.endswith(".pid") else name + ".pid")) as f:
            return int(f.read())

    def server_states(self):
        """{replica name: status} from HAProxy's stats CSV for the by_prefix backend."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.base + 324}/stats;csv", timeout=5) as r:
            lines = r.read().decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        states = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(",")))
            if row.get("pxname") == "by_prefix" and row.get("svname", "").startswith("replica"):
                states[row["svname"]] = row["status"]
        return states


def test_hit_rates(args, base):
    groups, per_group = 6, 6
    c = Cluster(args, base, "prefix")
    c.up()
    try:
        affinity = hit_rate(run_workload(c.url, "affinity", groups, per_group))
        single = hit_rate(run_workload(f"http://127.0.0.1:{base + 1}", "single", groups, per_group))
    finally:
        c.down()
    rr_cluster = Cluster(args, base, "roundrobin")
    rr_cluster.up()
    try:
        rr = hit_rate(run_workload(rr_cluster.url, "roundrobin", groups, per_group))
    finally:
        rr_cluster.down()
    log(f"prefix-cache hit rate: single server {single:.3f}, 3 replicas with prefix affinity {affinity:.3f} "
        f"({affinity / single:.2f} of single), 3 replicas round robin {rr:.3f}")
    assert affinity >= 0.9 * single, "prefix affinity lost more than 10% of the single server's hit rate"
    assert affinity >= rr + 0.1, "prefix affinity is not clearly above round robin"


def load_in_background(url, tag, groups, per_group, max_tokens):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", run_workload(url, tag, groups, per_group, max_tokens)))
    t.start()
    return t, out


def owners(c, tag, groups):
    """Which replica serves each group's prefix (stable while all are up)."""
    return {g: post(c.url + "/v1/completions", request_body(tag, g, 0, 1))[2] for g in range(groups)}


def open_stream(url, tag, group):
    """A long streamed completion of `group`, returned once its first event
    arrived, so it is surely in flight on its replica."""
    body = request_body(tag, group, 99, 400)
    body.update(stream=True, ignore_eos=True)
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    r = urllib.request.urlopen(req, timeout=120)
    assert r.status == 200
    first = r.readline()
    assert first.startswith(b"data: {"), first
    return r


def read_stream_to_end(r):
    """(events, ended with [DONE]); a connection cut short ends it early."""
    events, done = 0, False
    try:
        for line in r:
            if line.startswith(b"data: [DONE]"):
                done = True
            elif line.startswith(b"data: "):
                events += 1
    except (OSError, ValueError, urllib.error.URLError, http.client.HTTPException):
        pass
    return events, done


def stream_and_load_on_busiest(c, tag):
    """The setup of the fault tests: which replica owns each of 6 groups, the
    one owning most (the victim), a long stream of one of its groups in flight,
    and 6 x 8 requests running in the background.
    Returns (owner, victim_name, stream, load thread, load results)."""
    owner = owners(c, tag, 6)
    victim_name = max(set(owner.values()), key=list(owner.values()).count)
    victim_group = next(g for g in owner if owner[g] == victim_name)
    stream = open_stream(c.url, tag, victim_group)
    t, out = load_in_background(c.url, tag, 6, 8, 48)
    return owner, victim_name, stream, t, out


def test_sigterm_drains(args, base):
    c = Cluster(args, base, "prefix")
    c.up()
    try:
        owner, victim_name, stream, t, out = stream_and_load_on_busiest(c, "drain")
        victim = c.pid(victim_name)
        os.kill(victim, signal.SIGTERM)
        events, done = read_stream_to_end(stream)
        t.join()
        results = out["r"]
        failed = [r for r in results if r["status"] != 200]
        served = {}
        for r in results:
            served[r["served_by"]] = served.get(r["served_by"], 0) + 1
        log(f"SIGTERM {victim_name} under load: its in-flight stream got {events} more events, [DONE] {done}; "
            f"{len(results)} other requests, {len(failed)} failed, served by {served}")
        assert done, "the draining replica's in-flight stream did not end cleanly"
        assert not failed, f"requests failed while a replica drained: {[(r['status'], str(r['body'])[:200]) for r in failed[:3]]}"
        for _ in range(100):
            if not os.path.exists(f"/proc/{victim}"):
                break
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{victim}"), "the drained replica did not exit"
    finally:
        c.down()


def test_sigkill(args, base):
    c = Cluster(args, base, "prefix")
    c.up()
    try:
        owner, victim_name, stream, t, out = stream_and_load_on_busiest(c, "kill")
        os.kill(c.pid(victim_name), signal.SIGKILL)
        killed_at = time.time()
        events, done = read_stream_to_end(stream)
        down_after = None
        while time.time() - killed_at < 10:
            if c.server_states().get(victim_name, "").startswith("DOWN"):
                down_after = time.time() - killed_at
                break
            time.sleep(0.1)
        t.join()
        results = out["r"]
        failed = [r for r in results if r["status"] != 200]
        outside = [r for r in failed if owner[r["group"]] != victim_name]
        log(f"SIGKILL {victim_name} under load: its in-flight stream ended after {events} more events, [DONE] {done}; "
            f"{len(results)} other requests, {len(failed)} failed (only of groups it served: {not outside}); "
            f"marked DOWN after {down_after:.1f} s" if down_after is not None else "never marked DOWN")
        assert not done, "a stream from a killed replica claims to be complete"
        assert not outside, f"requests of other replicas failed: {[(r['status'], r['served_by']) for r in outside]}"
        # Each group runs one request at a time: at most one per victim-owned group was in flight.
        assert len(failed) <= sum(1 for g in owner if owner[g] == victim_name)
        # Health checks every 1 s, down after 2 failures: 2 s, plus a check's timeout.
        assert down_after is not None and down_after <= 4.0, f"marked down after {down_after} s"
    finally:
        c.down()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    args.repo, args.bin, args.work = map(os.path.abspath, (args.repo, args.bin, args.work))
    os.makedirs(args.work, exist_ok=True)
    base = free_base_port(3)
    for test in (test_hit_rates, test_sigterm_drains, test_sigkill):
        log(f"== {test.__name__}")
        t0 = time.time()
        test(args, base)
        log(f"   passed in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
