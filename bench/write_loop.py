"""The invoicing write path in a tight loop (issue 9): one invoicing process (`python -m
services.invoicing serve`, role all unless --env says otherwise) on a fresh database and topic
prefix, 100 customers, then bench/platform's load generator (raw HTTP/1.1, its own process) posting
one invoice per request with 32 clients in a closed loop, then batches of POST /v1/invoice-batches
(2 in flight). Prints invoices/s, latency and the service process's CPU time per invoice (user +
system from /proc: steadier than the rates on a shared machine). --profile FILE records the
service with py-spy (raw collapsed stacks) and prints the functions with the most samples, self
and total.

    .venv/bin/python -m bench.write_loop --seconds 15 --batches 4 [--profile out.raw] [--skip-single]
"""
import argparse, asyncio, collections, os, re, subprocess, sys, time, uuid, multiprocessing as mp
from pathlib import Path
import httpx
from tests.support.infra import KAFKA, fresh_database, sqlalchemy_url
from tests.support.platform import _die_with_parent, create_event_topics, free_port
from bench.platform import loadgen

ROOT = Path(__file__).resolve().parents[1]

def print_profile(path, top=30):
    """Samples per function (file, not line), self and total, from py-spy's raw output."""
    own, total, n_all = collections.Counter(), collections.Counter(), 0
    for line in open(path):
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack:
            continue
        n = int(n); n_all += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    for title, counts in (("self", own), ("total", total)):
        print(f"--- {title} ({n_all} samples)")
        for f, n in counts.most_common(top):
            print(f"{100 * n / max(1, n_all):5.1f}% {f}")


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def pct(v, p):
    v = sorted(v); return v[min(len(v)-1, int(round(p/100*(len(v)-1))))] if v else float("nan")

async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--skip-single", action="store_true")
    ap.add_argument("--env", action="append", default=[])
    a = ap.parse_args()
    run = uuid.uuid4().hex[:6]
    prefix = f"tight{run}"
    await create_event_topics(prefix, KAFKA)
    async with fresh_database("tight") as db:
        port = free_port()
        env = {**os.environ, "LEDGERLINE_INVOICING_DATABASE_URL": sqlalchemy_url(db),
               "LEDGERLINE_INVOICING_KAFKA_BOOTSTRAP_SERVERS": KAFKA, "LEDGERLINE_INVOICING_PORT": str(port),
               "LEDGERLINE_INVOICING_TOPIC_PREFIX": prefix, "LEDGERLINE_INVOICING_ALLOW_OPEN": "true",
               "LEDGERLINE_INVOICING_LOG_LEVEL": "WARNING"}
        for e in a.env:
            k, v = e.split("=", 1); env[k] = v
        proc = subprocess.Popen([sys.executable, "-m", "services.invoicing", "serve"], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(timeout=60) as c:
                for _ in range(300):
                    try:
                        if (await c.get(url + "/readyz")).status_code == 200: break
                    except httpx.HTTPError: pass
                    await asyncio.sleep(0.3)
                customers = [(f"LOAD-{cur}-{k:03d}", cur) for cur in ("USD", "EUR") for k in range(50)]
                for cid, cur in customers:
                    r = await c.post(url + "/v1/customers", json={"customer_id": cid, "name": cid, "currency": cur,
                        "credit_limit": "999999999.00", "registered_on": "2024-01-01"}, headers={"Idempotency-Key": cid})
                    assert r.status_code == 201, r.text
            customers = [x for pair in zip(customers[:50], customers[50:]) for x in pair]
            spy = None
            if a.profile:
                spy = subprocess.Popen([str(ROOT / ".venv/bin/py-spy"), "record", "--pid", str(proc.pid), "--rate", "250",
                                        "--format", "raw", "--output", a.profile] + (["--native"] if os.environ.get("NATIVE") else ["--nonblocking"]),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                await asyncio.sleep(1)
            if not a.skip_single:
                spec = loadgen.LoadSpec(targets=[f"127.0.0.1:{port}"], path="/v1/invoices", mode="closed",
                                        duration=a.seconds, prefix="c-", customers=customers, concurrency=32)
                c0 = cpu(proc.pid)
                with mp.get_context("spawn").Pool(1) as pool:
                    res = await asyncio.get_running_loop().run_in_executor(None, pool.apply, loadgen.run_load, (spec,))
                ok = [i for i, s in enumerate(res.status) if s == 201]
                lat = [(res.done[i] - res.due[i]) * 1000 for i in ok]
                el = res.ended - res.started
                c1 = cpu(proc.pid)
                print(f"single: cpu {1000*(c1-c0)/max(1,len(ok)):.2f} ms/invoice; {len(ok)/el:.1f}/s ok={len(ok)} bad={len(res.status)-len(ok)} p50={pct(lat,50):.0f} p99={pct(lat,99):.0f} ms errors={res.errors[:2]}", flush=True)
            if a.batches:
                async with httpx.AsyncClient(timeout=600) as c:
                    issued = 0; t0 = time.perf_counter(); c0 = cpu(proc.pid)
                    queue = list(range(a.batches))
                    async def worker():
                        nonlocal issued
                        while queue:
                            b = queue.pop(0)
                            bodies = [loadgen.invoice_body(f"b{b}-", n, customers) for n in range(a.batch_size)]
                            r = await c.post(url + "/v1/invoice-batches", json={"invoices": bodies}, headers={"Idempotency-Key": f"bb-{b}-{run}"})
                            assert r.status_code == 201, r.text[:500]
                            j = r.json(); issued += j["issued"]
                            if j["error"]: print("errors", [x for x in j["results"] if x["status"] == "error"][:2])
                    await asyncio.gather(worker(), worker())
                    el = time.perf_counter() - t0
                    print(f"batch: cpu {1000*(cpu(proc.pid)-c0)/max(1,issued):.3f} ms/invoice; {issued/el:.0f} invoices/s ({issued} in {el:.1f}s)", flush=True)
            if spy:
                spy.send_signal(2); spy.wait(30)
                print_profile(a.profile)
        finally:
            proc.terminate()
            try: proc.wait(20)
            except subprocess.TimeoutExpired: proc.kill()

if __name__ == "__main__":
    asyncio.run(main())
