#!/usr/bin/env python3
"""The distill Grafana dashboard, written as code (stdlib only).

    python3 deploy/grafana/dashboard.py          # writes dashboards/distill.json
    python3 deploy/grafana/dashboard.py --check  # exit 1 if the committed JSON differs

Every query uses only the names of docs/metrics.md and the dashboard's two
variables: `$job` (label job_id) and `$rank` (label rank), both multi-valued,
so selectors match them with `=~`. Queries never use Grafana's own macros
($__rate_interval, ...): a test can take `panels[].targets[].expr`, put a job
id and a rank in place of $job and $rank, and send it to Prometheus as it is.
tests/unit/scripts/deploy_dashboard_test.py checks the names, labels and
syntax; the datasource is the one deploy/grafana/provisioning/ creates.
"""
import argparse
import json
import os
import sys

DATASOURCE = {"type": "prometheus", "uid": "distill-prometheus"}
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards", "distill.json")

# Selector fragments.
JOB = 'job_id=~"$job"'
JOB_RANK = 'job_id=~"$job",rank=~"$rank"'


class Layout:
    """Places panels left to right in rows of 24 grid units, with ids."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_h = 0

    def row(self, title):
        self._newline()
        self.panels.append({"type": "row", "title": title, "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                            "id": len(self.panels) + 1, "panels": []})
        self.y += 1

    def add(self, panel, w=8, h=8):
        if self.x + w > 24:
            self._newline()
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)

    def _newline(self):
        if self.x:
            self.y += self.row_h
        self.x = 0
        self.row_h = 0


def target(expr, legend, ref):
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref,
            "range": True}


def panel(kind, title, description, targets, unit, stack=False, extra=None):
    """A timeseries or stat panel; targets: [(expr, legend)]."""
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(e, l, chr(ord("A") + i)) for i, (e, l) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line", "fillOpacity": 30 if stack else 10, "lineWidth": 1,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"}}
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    elif kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    if extra:
        p["fieldConfig"]["defaults"].update(extra)
    return p


def ts(title, description, targets, unit, **kw):
    return panel("timeseries", title, description, targets, unit, **kw)


def stat(title, description, targets, unit, **kw):
    return panel("stat", title, description, targets, unit, **kw)


def quantiles(metric, by, selector=""):
    """p50 and p99 of histogram `metric` by the labels `by` (list)."""
    labels = ", ".join(["le"] + by)
    legend = " ".join("{{%s}}" % b for b in by)
    return [(f"histogram_quantile({q}, sum by ({labels}) "
             f"(rate({metric}_bucket{selector}[5m])))", f"p{int(q * 100)} {legend}".strip())
            for q in (0.5, 0.99)]


TEACHER_WAIT = ',phase="teacher_wait"'


def phase_rate(extra=""):
    return f"rate(distill_step_phase_seconds_total{{{JOB_RANK}{extra}}}[1m])"


def panels():
    L = Layout()
    L.row("Throughput")
    L.add(ts("Tokens/s per job", "sum over ranks of rate(distill_tokens_total)",
             [(f"sum by (job_id) (rate(distill_tokens_total{{{JOB}}}[1m]))", "{{job_id}}")],
             "short"))
    L.add(ts("Tokens/s per rank", "rate(distill_tokens_total) of each rank",
             [(f"sum by (job_id, rank) (rate(distill_tokens_total{{{JOB_RANK}}}[1m]))",
               "{{job_id}} rank {{rank}}")], "short"))
    L.add(ts("Step time", "distill_step_duration_seconds over the selected ranks",
             quantiles("distill_step_duration_seconds", ["job_id"], "{" + JOB_RANK + "}"), "s"))
    L.add(ts("Step split (seconds per step)",
             "distill_step_phase_seconds_total by phase (compute, teacher_wait, allreduce) per "
             "optimizer step, averaged over the selected ranks; the stack is the step time",
             [(f"sum by (job_id, phase) ({phase_rate()}) / on (job_id) group_left "
               f"sum by (job_id) (rate(distill_steps_total{{{JOB_RANK}}}[1m]))",
               "{{job_id}} {{phase}}")], "s", stack=True))
    L.add(ts("Teacher wait fraction", "teacher_wait over the whole step time",
             [(f"sum by (job_id) ({phase_rate(TEACHER_WAIT)})"
               f" / sum by (job_id) ({phase_rate()})", "{{job_id}}")], "percentunit",
             extra={"min": 0, "max": 1}))
    L.add(ts("Teacher stream bandwidth", "bytes/s of teacher logits and features received",
             [(f"sum by (job_id) (rate(distill_teacher_stream_bytes_total{{{JOB_RANK}}}[1m]))",
               "{{job_id}}"),
              (f"sum by (job_id, rank) (rate(distill_teacher_stream_bytes_total{{{JOB_RANK}}}[1m]))",
               "{{job_id}} rank {{rank}}")], "Bps"))

    L.row("Training")
    L.add(ts("Loss by component", "distill_loss: total, ce, kd, feature_<pair>",
             [(f"distill_loss{{{JOB}}}", "{{job_id}} {{component}}")], "short"))
    L.add(ts("Eval loss and KL", "latest eval cross-entropy and KL(teacher || student) at T = 1",
             [(f"distill_eval_loss{{{JOB}}}", "{{job_id}} eval loss"),
              (f"distill_eval_kl{{{JOB}}}", "{{job_id}} eval KL")], "short"))
    L.add(ts("Eval top-1 agreement", "top-1 agreement with the teacher",
             [(f"distill_eval_top1_agreement{{{JOB}}}", "{{job_id}}")], "percentunit",
             extra={"min": 0, "max": 1}))
    L.add(ts("Learning rate", "learning rate of the latest step",
             [(f"distill_learning_rate{{{JOB}}}", "{{job_id}}")], "short"))
    L.add(ts("Gradient norm", "before clipping",
             [(f"distill_grad_norm{{{JOB}}}", "{{job_id}}")], "short"))
    L.add(ts("Progress", "step / total_steps",
             [(f"distill_job_progress_ratio{{{JOB}}}", "{{job_id}}")], "percentunit",
             extra={"min": 0, "max": 1}))
    L.add(stat("ETA", "estimated time to the job's last step",
               [(f"distill_eta_seconds{{{JOB}}}", "{{job_id}}")], "s"), w=8, h=6)
    L.add(stat("Running jobs", "distill_job_info of each running job",
               [(f"count by (type, method) (distill_job_info{{{JOB}}})", "{{type}} {{method}}")],
               "short"), w=8, h=6)

    L.row("Resources")
    L.add(ts("MFU", "model FLOPs utilisation per rank (absent without a known peak)",
             [(f"distill_mfu_ratio{{{JOB_RANK}}}", "{{job_id}} rank {{rank}}")], "percentunit",
             extra={"min": 0}))
    L.add(ts("GPU memory (peak)", "LibTorch's CUDA caching allocator, CUDA ranks only",
             [(f"distill_gpu_memory_peak_bytes{{{JOB_RANK}}}", "{{job_id}} rank {{rank}}")],
             "bytes"))
    L.add(ts("Host memory (peak RSS)", "peak resident memory of each rank's process",
             [(f"distill_host_memory_peak_bytes{{{JOB_RANK}}}", "{{job_id}} rank {{rank}}")],
             "bytes"))
    L.add(ts("Seconds since each rank's last report", "the RankSilent alert fires past 120 s",
             [(f"time() - distill_rank_last_report_timestamp_seconds{{{JOB_RANK}}}",
               "{{job_id}} rank {{rank}}")], "s"), w=24)

    L.row("Coordinator")
    L.add(ts("Queue depth", "jobs waiting for slots",
             [("sum(distill_queue_depth)", "queued")], "short"))
    L.add(ts("Jobs by state", "distill_jobs",
             [("sum by (state) (distill_jobs)", "{{state}}")], "short"))
    L.add(ts("Submissions, starts, finishes", "per minute",
             [("sum(rate(distill_job_submissions_total[5m])) * 60", "submitted"),
              ("sum(rate(distill_jobs_started_total[5m])) * 60", "started"),
              ("sum by (state) (rate(distill_jobs_finished_total[5m])) * 60", "{{state}}")],
             "short"))
    L.add(ts("Failures by reason", "jobs that ended FAILED in the last hour",
             [("sum by (reason) (increase(distill_job_failures_total[1h]))", "{{reason}}")],
             "short"))
    L.add(ts("Retries by reason", "attempts retried in the last hour",
             [("sum by (reason) (increase(distill_job_retries_total[1h]))", "{{reason}}")],
             "short"))
    L.add(stat("Build", "distill_build_info",
               [("count by (version, torch, cuda) (distill_build_info)", "{{version}} (LibTorch {{torch}}, {{cuda}})")],
               "short"))
    L.add(ts("RPC latency", "server-side latency of each Coordinator RPC (streams: whole stream)",
             quantiles("distill_rpc_duration_seconds", ["method"]), "s"), w=12)
    L.add(ts("Store commit time", "one SQLite transaction (group-committed)",
             quantiles("distill_store_commit_duration_seconds", []), "s"), w=12)
    return L.panels


def variable(name, label, query):
    return {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "query": {"query": query, "refId": f"{name}-variable"}, "definition": query,
        "refresh": 2, "multi": True, "includeAll": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1, "options": [], "hide": 0,
    }


def dashboard():
    return {
        "uid": "distill-overview",
        "title": "distill",
        "description": "Jobs, ranks and the coordinator of the distill service (docs/metrics.md).",
        "tags": ["distill"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "templating": {"list": [
            variable("job", "job", "label_values(distill_tokens_total, job_id)"),
            variable("rank", "rank", 'label_values(distill_tokens_total{job_id=~"$job"}, rank)'),
        ]},
        "annotations": {"list": []},
        "panels": panels(),
    }


def render():
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed JSON")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    text = render()
    if args.check:
        with open(args.out) as f:
            if f.read() != text:
                print(f"{args.out} is stale: run {sys.argv[0]}", file=sys.stderr)
                return 1
        return 0
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
