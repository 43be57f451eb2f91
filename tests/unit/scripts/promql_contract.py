"""Checks PromQL expressions against docs/metrics.md, the metrics contract.

Used by deploy_dashboard_test.py and deploy_prometheus_test.py (not a test
itself). Syntax is Prometheus' own business (`promtool check rules` on a rules
file made of the expressions: promtool_syntax_errors); this module checks what
promtool cannot know: every metric name is in the contract's tables (a
histogram as NAME_bucket/_sum/_count), every label is one of the metrics' own
(never `job`: the contract's per-job label is job_id), counters appear only
under rate()/increase() and gauges never do, a histogram's buckets only under
histogram_quantile() grouped by le.
"""
import os
import re
import subprocess
import tempfile

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

FUNCTIONS = {
    "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets",
    "histogram_quantile", "time", "timestamp", "abs", "ceil", "floor", "round", "clamp",
    "clamp_min", "clamp_max", "absent", "absent_over_time", "vector", "scalar", "label_replace",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "count_over_time",
    "last_over_time", "predict_linear", "sort", "sort_desc",
}
AGGREGATIONS = {"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk",
                "quantile", "count_values", "group"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"bool", "and", "or", "unless", "offset"}
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}
# Labels Prometheus itself adds to every scraped series.
TARGET_LABELS = {"instance"}

TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])
  | (?P<duration>\d+(?:ms|[smhdwy])\b)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=])
  | (?P<punct>[(){},])
""", re.VERBOSE)


def load_contract(path=None):
    """{name: (type, frozenset(labels))} from the tables of docs/metrics.md."""
    path = path or os.path.join(SOURCE, "docs", "metrics.md")
    contract = {}
    row = re.compile(r"^\|\s*`(distill_[a-z0-9_]+)`\s*\|\s*([a-z]+)[^|]*\|([^|]*)\|")
    with open(path) as f:
        for line in f:
            m = row.match(line)
            if m:
                labels = frozenset(l.strip() for l in m.group(3).split(",") if l.strip())
                contract[m.group(1)] = (m.group(2), labels)
    return contract


def tokenize(expr):
    pos, out = 0, []
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def resolve(name, contract):
    """(base metric, its type, suffix) for a series name, or None."""
    if name in contract:
        return name, contract[name][0], ""
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and contract.get(base, ("",))[0] == "histogram":
            return base, "histogram", suffix
    return None


def check_expr(expr, contract, require_job_var=False, raw_counters=()):
    """Problems (strings) of one expression; [] when it keeps the contract.

    require_job_var: every selector of a job_id-labelled series must match
    job_id=~"$job" (the dashboard's panels follow its job variable).
    raw_counters: counters the expression may read as values (say why)."""
    try:
        toks = tokenize(expr)
    except ValueError as e:
        return [str(e)]
    problems = []
    metrics = []          # (name, base, type, suffix, enclosing functions, matcher labels)
    grouping_labels = []  # labels named in by/without/on/ignoring/group_*
    stack = []            # one entry per open '(': the function it calls, or None
    pending_fn = None     # an aggregation waiting for its '(' after a by clause
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else (None, None)
        if kind == "ident" and text in GROUPING:
            if nxt[1] == "(":
                j = i + 2
                while j < len(toks) and toks[j][1] != ")":
                    if toks[j][0] == "ident":
                        grouping_labels.append(toks[j][1])
                    elif toks[j][1] != ",":
                        problems.append(f"unexpected {toks[j][1]!r} in {text}(...)")
                    j += 1
                i = j + 1
                continue
            i += 1
            continue
        if kind == "ident" and (text in FUNCTIONS or text in AGGREGATIONS):
            if nxt[1] == "(":
                stack.append(text)
                i += 2
                continue
            if text in AGGREGATIONS and nxt[1] in GROUPING:
                pending_fn = text
                i += 1
                continue
            problems.append(f"{text} without '('")
            i += 1
            continue
        if kind == "ident" and nxt[1] == "(":
            problems.append(f"unknown function {text}()")
            stack.append(text)
            i += 2
            continue
        if kind == "ident" and text in KEYWORDS:
            i += 1
            continue
        if kind == "ident":
            matchers = {}
            j = i + 1
            if nxt[1] == "{":
                j = i + 2
                while j < len(toks) and toks[j][1] != "}":
                    if toks[j][0] == "ident" and j + 2 < len(toks) and toks[j + 2][0] == "string":
                        matchers[toks[j][1]] = (toks[j + 1][1], toks[j + 2][1][1:-1])
                        j += 3
                    elif toks[j][1] == ",":
                        j += 1
                    else:
                        problems.append(f"bad matcher near {toks[j][1]!r} in {text}{{...}}")
                        j += 1
                j += 1
            r = resolve(text, contract)
            if r is None:
                problems.append(f"{text}: not in docs/metrics.md")
            else:
                metrics.append((text, *r, [f for f in stack if f], matchers))
            i = j
            continue
        if text == "(":
            stack.append(pending_fn)
            pending_fn = None
        elif text == ")":
            if not stack:
                problems.append("unbalanced ')'")
            else:
                stack.pop()
        elif text == "{":
            problems.append("a selector without a metric name")
        i += 1
    if stack:
        problems.append("unbalanced '('")

    known_labels = set(TARGET_LABELS)
    for name, base, mtype, suffix, fns, matchers in metrics:
        labels = contract[base][1] | ({"le"} if suffix == "_bucket" else set())
        known_labels |= labels
        for label, (op, value) in matchers.items():
            if label not in labels and label not in TARGET_LABELS:
                problems.append(f"{name}: label {label!r} is not one of {sorted(labels)}")
        inner = fns[-1] if fns else None
        if mtype in ("counter", "histogram"):
            if inner not in COUNTER_FUNCTIONS and name not in raw_counters:
                problems.append(f"{name} is a counter: use rate() or increase(), not {inner}()")
        elif inner in COUNTER_FUNCTIONS:
            problems.append(f"{name} is a {mtype}: {inner}() is for counters")
        if suffix == "_bucket" and ("histogram_quantile" not in fns or "le" not in grouping_labels):
            problems.append(f"{name}: buckets belong in histogram_quantile(..., sum by (le) ...)")
        if require_job_var and "job_id" in labels:
            if matchers.get("job_id") != ("=~", "$job"):
                problems.append(f'{name}: select job_id=~"$job"')
    for label in grouping_labels:
        if label not in known_labels:
            problems.append(f"grouping label {label!r} is on none of the metrics used")
    for label in ["job"]:
        if label in grouping_labels or any(label in m[5] for m in metrics):
            problems.append("label 'job' is Prometheus' (the scrape job): use job_id")
    return problems


def promtool_syntax_errors(exprs):
    """Prometheus' parser on each expression (as a recording rule): '' when all parse."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "exprs.yml")
        with open(path, "w") as f:
            f.write("groups:\n- name: exprs\n  rules:\n")
            for i, e in enumerate(exprs):
                quoted = e.replace("\\", "\\\\").replace('"', '\\"')
                f.write(f'  - record: expr_{i}\n    expr: "{quoted}"\n')
        r = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
        return "" if r.returncode == 0 else (r.stdout + r.stderr)
