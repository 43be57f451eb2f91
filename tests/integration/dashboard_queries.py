"""Every query of the Grafana dashboard, asked of a real Prometheus.

  dashboard_queries.py DASHBOARD.json PROMETHEUS_URL JOB_ID [--empty TITLE=REASON ...]

Takes each panel's targets[].expr from the dashboard JSON (rows' panels
included), substitutes the dashboard variables ($job: the job id, $rank: any
rank, as "All" gives them), runs it through Prometheus' HTTP API
(/api/v1/query) and prints one line per query. A query passes when Prometheus
accepts it and returns at least one sample; a panel named by --empty must
return none (what this machine cannot produce, e.g. GPU memory without a GPU),
so the exception cannot hide a panel that broke elsewhere. The template
variables' label_values() are checked through /api/v1/series. Exit status 0
iff every query passed.
"""
import json
import re
import sys
import urllib.parse
import urllib.request


def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def substitute(expr, job):
    return expr.replace("$job", re.escape(job)).replace("$rank", ".*")


def query(url, expr):
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(body.get("error", "no status"))
    return body["data"]["result"]


def series(url, match):
    q = urllib.parse.urlencode({"match[]": match})
    with urllib.request.urlopen(f"{url}/api/v1/series?{q}", timeout=10) as r:
        return json.load(r)["data"]


def check_variables(dashboard, url, job):
    """label_values(METRIC{...}, LABEL): the series exist and carry the job."""
    failures = 0
    for var in dashboard.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q or "")
        if not m:
            continue
        values = {s.get(m.group(2)) for s in series(url, substitute(m.group(1), job))}
        ok = bool(values - {None})
        print(f"{'ok' if ok else 'FAIL'} variable {var['name']}: {sorted(v for v in values if v)}")
        failures += not ok
    return failures


def main():
    path, url, job = sys.argv[1:4]
    empty = dict(a.split("=", 1) for a in sys.argv[5::2]) if "--empty" in sys.argv else {}
    dashboard = json.load(open(path))
    failures = check_variables(dashboard, url, job)
    count = 0
    for p in panels(dashboard["panels"]):
        for t in p.get("targets", []):
            expr = substitute(t["expr"], job)
            count += 1
            try:
                result = query(url, expr)
            except Exception as e:  # a query Prometheus refuses
                print(f"FAIL {p['title']}: {expr}: {e}")
                failures += 1
                continue
            want_empty = p["title"] in empty
            ok = (len(result) == 0) if want_empty else (len(result) > 0)
            note = f" (expected empty: {empty[p['title']]})" if want_empty else ""
            print(f"{'ok' if ok else 'FAIL'} {p['title']}: {len(result)} series{note}: {expr}")
            failures += not ok
    print(f"{count} queries, {failures} failed")
    sys.exit(1 if failures or count == 0 else 0)


if __name__ == "__main__":
    main()
