#!/usr/bin/env python3
"""The crash bound under a burst of new articles, against a built binary.

Starts the binary (embedded store) in a fresh data directory, posts REQUESTS requests
of 1,000 views of new article ids each from CONNS keep-alive connections, sends it
SIGKILL KILL_AT seconds after the burst began (or --after-burst seconds after it
ended), restarts it, waits until the journal is replayed, then reads every accepted
article back and prints the events lost by how many seconds before the kill their 202
came. The contract allows losing what was accepted in the last flush interval (1 s).

    python3 benches/crash_burst.py target/release/viewcounter --after-burst 2.5
    python3 benches/crash_burst.py target/release/viewcounter --kill-at 8
"""
import argparse, http.client, json, os, shutil, signal, socket, subprocess, tempfile, threading, time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(binary, port, data):
    p = subprocess.Popen([binary, '--listen', f'127.0.0.1:{port}', '--data-dir', data],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=1)
            return p
        except OSError:
            time.sleep(0.1)
    raise SystemExit('the binary did not start')


def burst(port, requests, conns, answers):
    def worker(t):
        c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
        for r in range(t, requests, conns):
            body = json.dumps([{'type': 'view', 'article': f'b{r}-{j}'} for j in range(1000)])
            try:
                c.request('POST', '/v1/events', body, {'Content-Type': 'application/json', 'User-Agent': UA})
                resp = c.getresponse()
                resp.read()
                answers[r] = (resp.status, time.time())
            except OSError:
                answers[r] = (None, time.time())
                c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(conns)]
    for t in threads:
        t.start()
    return threads


def metric(port, name):
    text = urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + ' '):
            return float(line.split()[1])
    return None


def stored_views(port, r):
    ids = [f'b{r}-{j}' for j in range(1000)]
    total = 0
    for k in range(0, 1000, 100):
        url = f'http://127.0.0.1:{port}/v1/articles?ids=' + ','.join(ids[k:k + 100])
        total += sum(a['views'] for a in json.load(urllib.request.urlopen(url, timeout=30))['articles'])
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('binary')
    ap.add_argument('--requests', type=int, default=1500)
    ap.add_argument('--conns', type=int, default=8)
    when = ap.add_mutually_exclusive_group(required=True)
    when.add_argument('--kill-at', type=float, help='seconds after the burst began')
    when.add_argument('--after-burst', type=float, help='seconds after the burst ended')
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix='crash-burst-')
    port = free_port()
    try:
        p = start(a.binary, port, data)
        answers = {}
        began = time.time()
        threads = burst(port, a.requests, a.conns, answers)
        if a.kill_at is not None:
            time.sleep(max(0.0, began + a.kill_at - time.time()))
        else:
            for t in threads:
                t.join()
            time.sleep(a.after_burst)
        killed = time.time()
        p.send_signal(signal.SIGKILL)
        p.wait()
        for t in threads:
            t.join()
        p = start(a.binary, port, data)
        while metric(port, 'viewcounter_unacked_events') != 0 or metric(port, 'viewcounter_journal_bytes') != 0:
            time.sleep(0.5)
        accepted = sorted((t, r) for r, (s, t) in answers.items() if s == 202)
        with ThreadPoolExecutor(4) as ex:
            got = list(ex.map(lambda x: stored_views(port, x[1]), accepted))
        by_age = {}
        for (t, _), views in zip(accepted, got):
            row = by_age.setdefault(int(killed - t), [0, 0])
            row[0] += 1000
            row[1] += 1000 - views
        print('seconds before the kill: accepted, lost')
        for age in sorted(by_age):
            print(f'{age:>3}: {by_age[age][0]:>8} {by_age[age][1]:>8}')
        print(f'accepted {len(accepted) * 1000}, lost {sum(v[1] for v in by_age.values())}')
        p.terminate()
        p.wait()
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == '__main__':
    main()
