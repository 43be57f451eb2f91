"""deploy/prometheus (and deploy/compose's Prometheus config): promtool check
config / check rules / test rules, every alert expression keeps the metrics
contract (docs/metrics.md), every alert has a promtool test, and each test is
real: with one alert's expression replaced by one that never fires, `promtool
test rules` fails.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import promql_contract  # noqa: E402

PROM = os.path.join(promql_contract.SOURCE, "deploy", "prometheus")
COMPOSE = os.path.join(promql_contract.SOURCE, "deploy", "compose")


def promtool(*args, cwd=PROM):
    r = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


class PrometheusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(PROM, "alerts.yml")) as f:
            cls.rules = yaml.safe_load(f)
        cls.alerts = [r for g in cls.rules["groups"] for r in g["rules"] if "alert" in r]

    def test_config_is_valid(self):
        rc, out = promtool("check", "config", "prometheus.yml")
        self.assertEqual(rc, 0, out)
        # Compose mounts both files in /etc/prometheus/ (deploy/compose/compose.yml).
        with tempfile.TemporaryDirectory() as d:
            shutil.copy(os.path.join(COMPOSE, "prometheus.yml"), d)
            shutil.copy(os.path.join(PROM, "alerts.yml"), d)
            rc, out = promtool("check", "config", "prometheus.yml", cwd=d)
            self.assertEqual(rc, 0, out)

    def test_configs_scrape_the_coordinator(self):
        with open(os.path.join(PROM, "prometheus.yml")) as f:
            host = yaml.safe_load(f)
        jobs = {j["job_name"]: j for j in host["scrape_configs"]}
        self.assertEqual(jobs["distill-coordinator"]["static_configs"][0]["targets"],
                         ["127.0.0.1:9464"])
        self.assertIn("file_sd_configs", jobs["distill-workers"])
        with open(os.path.join(COMPOSE, "prometheus.yml")) as f:
            compose = yaml.safe_load(f)
        jobs = {j["job_name"]: j for j in compose["scrape_configs"]}
        self.assertEqual(jobs["distill-coordinator"]["static_configs"][0]["targets"],
                         ["coordinator:9464"])

    def test_rules_are_valid(self):
        rc, out = promtool("check", "rules", "alerts.yml")
        self.assertEqual(rc, 0, out)

    def test_alert_tests_pass(self):
        rc, out = promtool("test", "rules", "alerts_test.yml")
        self.assertEqual(rc, 0, out)

    def test_alerts_keep_the_contract(self):
        contract = promql_contract.load_contract()
        names = [a["alert"] for a in self.alerts]
        self.assertEqual(names, ["DistillJobFailed", "DistillRankSilent",
                                 "DistillThroughputDropped", "DistillQueueStuck"])
        # DistillJobFailed compares the counter itself with 0 and with its
        # value 10 minutes ago: a reason's first failure makes a new series at 1.
        raw = {"DistillJobFailed": ["distill_job_failures_total"]}
        for a in self.alerts:
            with self.subTest(alert=a["alert"]):
                self.assertEqual(promql_contract.check_expr(
                    a["expr"], contract, raw_counters=raw.get(a["alert"], ())), [])

    def test_every_alert_is_tested_and_each_test_can_fail(self):
        with open(os.path.join(PROM, "alerts_test.yml")) as f:
            tests = yaml.safe_load(f)
        tested = {t["alertname"] for g in tests["tests"] for t in g.get("alert_rule_test", [])}
        for a in self.alerts:
            self.assertIn(a["alert"], tested)
            with self.subTest(never_fires=a["alert"]), tempfile.TemporaryDirectory() as d:
                broken = yaml.safe_load(yaml.safe_dump(self.rules))
                for g in broken["groups"]:
                    for r in g["rules"]:
                        if r.get("alert") == a["alert"]:
                            r["expr"] = "vector(1) == 0"
                with open(os.path.join(d, "alerts.yml"), "w") as f:
                    yaml.safe_dump(broken, f)
                shutil.copy(os.path.join(PROM, "alerts_test.yml"), d)
                rc, out = promtool("test", "rules", "alerts_test.yml", cwd=d)
                self.assertNotEqual(rc, 0, f"the tests pass without {a['alert']}: {out}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
