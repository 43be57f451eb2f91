"""deploy/k8s, offline: every core object (Secret, PVC, Deployment, Service,
ConfigMap) against Kubernetes' own schemas with kubernetes-validate (strict:
unknown fields fail). The MPIJob (kubeflow.org/v2beta1) is a CRD that
kubernetes-validate has no schema for: its fields are checked here against the
MPI Operator's v2beta1 types (known keys, required fields, enums), and each of
its pod templates against core/v1 PodTemplate. Then the references between
objects (claims, secrets, configmaps, ports, flags) must resolve.
"""
import os
import sys
import unittest

import kubernetes_validate
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from promql_contract import SOURCE  # noqa: E402

K8S = os.path.join(SOURCE, "deploy", "k8s")
VERSION = "1.37.0"

# kubeflow/mpi-operator pkg/apis/kubeflow/v2beta1/types.go
MPIJOB_SPEC = {"slotsPerWorker", "runLauncherAsWorker", "runPolicy", "mpiReplicaSpecs",
               "sshAuthMountPath", "launcherCreationPolicy", "mpiImplementation"}
RUN_POLICY = {"cleanPodPolicy", "ttlSecondsAfterFinished", "activeDeadlineSeconds",
              "backoffLimit", "schedulingPolicy", "suspend", "managedBy"}
REPLICA_SPEC = {"replicas", "template", "restartPolicy"}
RESTART = {"Always", "OnFailure", "Never", "ExitCode"}


def load(name):
    with open(os.path.join(K8S, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def validate_mpijob(job):
    """Problems of an MPIJob's structure (strings)."""
    p = []
    if job.get("apiVersion") != "kubeflow.org/v2beta1":
        p.append("apiVersion must be kubeflow.org/v2beta1")
    if not job.get("metadata", {}).get("name"):
        p.append("metadata.name is required")
    spec = job.get("spec") or {}
    p += [f"spec.{k}: unknown field" for k in set(spec) - MPIJOB_SPEC]
    p += [f"spec.runPolicy.{k}: unknown field" for k in set(spec.get("runPolicy", {})) - RUN_POLICY]
    if spec.get("runPolicy", {}).get("cleanPodPolicy", "None") not in {"None", "Running", "All"}:
        p.append("spec.runPolicy.cleanPodPolicy: None, Running or All")
    if spec.get("mpiImplementation", "OpenMPI") not in {"OpenMPI", "Intel", "MPICH"}:
        p.append("spec.mpiImplementation: OpenMPI, Intel or MPICH")
    if not isinstance(spec.get("slotsPerWorker", 1), int):
        p.append("spec.slotsPerWorker: an integer")
    replicas = spec.get("mpiReplicaSpecs")
    if not isinstance(replicas, dict) or "Launcher" not in replicas:
        return p + ["spec.mpiReplicaSpecs.Launcher is required"]
    p += [f"spec.mpiReplicaSpecs.{k}: Launcher or Worker" for k in set(replicas) - {"Launcher", "Worker"}]
    if replicas["Launcher"].get("replicas", 1) != 1:
        p.append("spec.mpiReplicaSpecs.Launcher.replicas must be 1")
    for role, rs in replicas.items():
        where = f"spec.mpiReplicaSpecs.{role}"
        p += [f"{where}.{k}: unknown field" for k in set(rs) - REPLICA_SPEC]
        if rs.get("restartPolicy", "Never") not in RESTART:
            p.append(f"{where}.restartPolicy: one of {sorted(RESTART)}")
        if not isinstance(rs.get("replicas", 1), int) or rs.get("replicas", 1) < 1:
            p.append(f"{where}.replicas: a positive integer")
        if "template" not in rs:
            p.append(f"{where}.template is required")
            continue
        try:
            kubernetes_validate.validate(
                {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": role.lower()},
                 "template": rs["template"]}, VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            p.append(f"{where}.template: {e.message} at {'.'.join(map(str, e.path))}")
    return p


class K8sTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.coordinator = load("coordinator.yaml")
        cls.mpijob_file = load("mpijob.yaml")

    def objects(self, docs, kind):
        return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}

    def test_core_objects_validate_strictly(self):
        core = self.coordinator + [d for d in self.mpijob_file if d["kind"] != "MPIJob"]
        self.assertEqual(sorted(d["kind"] for d in core),
                         ["ConfigMap", "Deployment", "PersistentVolumeClaim",
                          "PersistentVolumeClaim", "Secret", "Service"])
        for d in core:
            with self.subTest(kind=d["kind"], name=d["metadata"]["name"]):
                kubernetes_validate.validate(d, VERSION, strict=True)

    def test_strict_validation_rejects_a_typo(self):
        dep = yaml.safe_load(yaml.safe_dump(self.objects(self.coordinator, "Deployment")["distill-coordinator"]))
        dep["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(dep, VERSION, strict=True)

    def test_mpijob_structure(self):
        (job,) = [d for d in self.mpijob_file if d["kind"] == "MPIJob"]
        self.assertEqual(validate_mpijob(job), [])
        broken = yaml.safe_load(yaml.safe_dump(job))
        broken["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["imagee"] = "x"
        broken["spec"]["slotPerWorker"] = 1
        del broken["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]
        problems = validate_mpijob(broken)
        self.assertEqual(len(problems), 3, problems)

    def test_mpijob_references_resolve(self):
        (job,) = [d for d in self.mpijob_file if d["kind"] == "MPIJob"]
        configmaps = self.objects(self.mpijob_file, "ConfigMap")
        claims = self.objects(self.mpijob_file, "PersistentVolumeClaim")
        for role, rs in job["spec"]["mpiReplicaSpecs"].items():
            for v in rs["template"]["spec"].get("volumes", []):
                if "configMap" in v:
                    self.assertIn(v["configMap"]["name"], configmaps)
                if "persistentVolumeClaim" in v:
                    self.assertIn(v["persistentVolumeClaim"]["claimName"], claims)
        spec = yaml.safe_load(configmaps["distill-brown-distill"]["data"]["job.yaml"])
        self.assertEqual(spec["name"], "brown-distill")
        launcher = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
        self.assertIn("/etc/distill/job.yaml", launcher["args"])
        np = int(launcher["args"][launcher["args"].index("-np") + 1])
        self.assertEqual(np, job["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] * job["spec"]["slotsPerWorker"])

    def test_coordinator_references_resolve(self):
        dep = self.objects(self.coordinator, "Deployment")["distill-coordinator"]
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        args = dict(a.lstrip("-").split("=", 1) for a in c["args"])
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        self.assertEqual(mounts[args["state-dir"]], "state")
        self.assertIn(volumes["state"]["persistentVolumeClaim"]["claimName"],
                      self.objects(self.coordinator, "PersistentVolumeClaim"))
        token_dir, key = os.path.split(args["auth-token-file"])
        secret = self.objects(self.coordinator, "Secret")[volumes[mounts[token_dir]]["secret"]["secretName"]]
        self.assertIn(key, secret["stringData"])
        self.assertEqual(args["metrics-listen"], "0.0.0.0:9464")
        svc = self.objects(self.coordinator, "Service")["distill-coordinator"]
        self.assertEqual(svc["spec"]["selector"], dep["spec"]["selector"]["matchLabels"])
        ports = {p["name"] for p in c["ports"]}
        self.assertTrue(all(p["targetPort"] in ports for p in svc["spec"]["ports"]))
        self.assertEqual(dep["spec"]["replicas"], 1)
        self.assertEqual(dep["spec"]["strategy"]["type"], "Recreate")


if __name__ == "__main__":
    unittest.main(verbosity=2)
