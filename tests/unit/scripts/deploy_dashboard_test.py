"""deploy/grafana: the committed dashboard is the generator's output, and every
panel queries the metrics contract (docs/metrics.md) with valid PromQL.

Syntax is checked by Prometheus' parser (promtool, from Debian's prometheus
package, scripts/setup.sh); names, labels and counter/gauge use by
promql_contract.py. The broken-panel cases below prove the checker fails.
"""
import importlib.util
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promql_contract  # noqa: E402

GRAFANA = os.path.join(promql_contract.SOURCE, "deploy", "grafana")
VARIABLES = {"job", "rank"}


def load_generator():
    spec = importlib.util.spec_from_file_location("dashboard", os.path.join(GRAFANA, "dashboard.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def panel_problems(dashboard, contract, datasource_uid):
    """Every problem of the dashboard's panels and variables, as strings."""
    problems = []
    exprs = []
    for p in dashboard["panels"]:
        if p["type"] == "row":
            continue
        where = f"panel {p.get('id')} {p.get('title')!r}"
        targets = p.get("targets") or []
        if not targets:
            problems.append(f"{where}: no query")
        if p.get("datasource", {}).get("uid") != datasource_uid:
            problems.append(f"{where}: datasource is not {datasource_uid}")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs):
            problems.append(f"{where}: duplicate refId")
        for t in targets:
            expr = t.get("expr", "").strip()
            if not expr:
                problems.append(f"{where}: empty expr")
                continue
            if t.get("datasource", {}).get("uid") != datasource_uid:
                problems.append(f"{where}: target datasource is not {datasource_uid}")
            used = set(re.findall(r"\$\{?(\w+)", expr)) | set(re.findall(r"\[\[(\w+)", expr))
            if used - VARIABLES:
                problems.append(f"{where}: variables {sorted(used - VARIABLES)} (only $job, $rank)")
            problems += [f"{where}: {e}" for e in
                         promql_contract.check_expr(expr, contract, require_job_var=True)]
            exprs.append(expr)
    for v in dashboard["templating"]["list"]:
        m = re.fullmatch(r"label_values\((\w+)(\{.*\})?, (\w+)\)", v["query"]["query"])
        if not m:
            problems.append(f"variable {v['name']}: not label_values(METRIC, LABEL)")
            continue
        metric, selector, label = m.groups()
        if label not in contract.get(metric, ("", ()))[1]:
            problems.append(f"variable {v['name']}: {metric} has no label {label}")
        if selector:
            problems += [f"variable {v['name']}: {e}" for e in promql_contract.check_expr(
                f"count by ({label}) (rate({metric}{selector}[1m]))", contract)]
    syntax = promql_contract.promtool_syntax_errors(exprs) if exprs else ""
    if syntax:
        problems.append("promtool: " + syntax)
    return problems


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.gen = load_generator()
        cls.contract = promql_contract.load_contract()
        with open(os.path.join(GRAFANA, "provisioning", "datasources", "prometheus.yml")) as f:
            cls.uid = re.search(r"^\s*uid:\s*(\S+)", f.read(), re.M).group(1)
        with open(cls.gen.OUT) as f:
            cls.committed_text = f.read()
        cls.committed = json.loads(cls.committed_text)

    def test_contract_is_read(self):
        self.assertEqual(self.contract["distill_tokens_total"],
                         ("counter", frozenset({"job_id", "rank"})))
        self.assertEqual(self.contract["distill_queue_depth"], ("gauge", frozenset()))
        self.assertGreaterEqual(len(self.contract), 28)

    def test_committed_json_is_the_generators_output(self):
        self.assertEqual(self.committed_text, self.gen.render(),
                         "deploy/grafana/dashboards/distill.json is stale: "
                         "run python3 deploy/grafana/dashboard.py")

    def test_every_panel_keeps_the_contract(self):
        self.assertEqual(panel_problems(self.committed, self.contract, self.uid), [])

    def test_panels_cover_the_issue(self):
        used = set()
        for p in self.committed["panels"]:
            for t in p.get("targets", []):
                used |= set(re.findall(r"distill_[a-z0-9_]+", t["expr"]))
        for name in ["distill_tokens_total", "distill_step_phase_seconds_total", "distill_loss",
                     "distill_eval_loss", "distill_eval_kl", "distill_eval_top1_agreement",
                     "distill_mfu_ratio", "distill_gpu_memory_peak_bytes",
                     "distill_host_memory_peak_bytes", "distill_eta_seconds",
                     "distill_queue_depth", "distill_jobs", "distill_job_failures_total",
                     "distill_job_retries_total", "distill_teacher_stream_bytes_total",
                     "distill_rpc_duration_seconds_bucket",
                     "distill_store_commit_duration_seconds_bucket"]:
            self.assertIn(name, used)
        self.assertEqual([v["name"] for v in self.committed["templating"]["list"]], ["job", "rank"])

    def test_provisioning_points_at_the_dashboards(self):
        with open(os.path.join(GRAFANA, "provisioning", "dashboards", "distill.yml")) as f:
            self.assertIn("path: /var/lib/grafana/dashboards", f.read())

    def broken(self, expr=None, targets=None, **panel):
        d = json.loads(self.committed_text)
        p = next(p for p in d["panels"] if p["type"] != "row")
        if targets is not None:
            p["targets"] = targets
        if expr is not None:
            p["targets"][0]["expr"] = expr
        p.update(panel)
        return panel_problems(d, self.contract, self.uid)

    def test_checker_fails_on_broken_panels(self):
        cases = {
            "no query": self.broken(targets=[]),
            "empty expr": self.broken(expr=" "),
            "unknown metric": self.broken(expr='sum(rate(distill_tokenz_total{job_id=~"$job"}[1m]))'),
            "label job": self.broken(expr='sum by (job) (rate(distill_tokens_total{job_id=~"$job"}[1m]))'),
            "matcher job": self.broken(expr='rate(distill_tokens_total{job="$job"}[1m])'),
            "unknown label": self.broken(expr='rate(distill_tokens_total{job_id=~"$job",gpu="0"}[1m])'),
            "counter without rate": self.broken(expr='distill_tokens_total{job_id=~"$job"}'),
            "rate of a gauge": self.broken(expr='rate(distill_loss{job_id=~"$job"}[1m])'),
            "bucket without le": self.broken(
                expr='histogram_quantile(0.9, sum by (job_id) (rate(distill_step_duration_seconds_bucket{job_id=~"$job"}[5m])))'),
            "not following $job": self.broken(expr="sum(rate(distill_tokens_total[1m]))"),
            "other variable": self.broken(
                expr='sum(rate(distill_tokens_total{job_id=~"$job"}[$__rate_interval]))'),
            "syntax": self.broken(expr='sum by (job_id) (rate(distill_tokens_total{job_id=~"$job"}[1m])'),
            "syntax promtool": self.broken(expr='rate(distill_tokens_total{job_id=~"$job"}[1m]) +'),
            "datasource": self.broken(datasource={"type": "prometheus", "uid": "other"}),
        }
        for case, problems in cases.items():
            with self.subTest(case=case):
                self.assertTrue(problems, f"{case}: the checker found nothing")


if __name__ == "__main__":
    unittest.main(verbosity=2)
