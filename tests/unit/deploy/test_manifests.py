"""Offline validation of deploy/k8s: render each overlay, validate every document against the
Kubernetes schemas (kubernetes-validate, pinned version) and the checked-in CRD schemas, and
check the rules the platform depends on (hardening, probes, scaling, tenant ACLs, network)."""
from __future__ import annotations

import copy
import re
import shutil
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from services.core.config import Settings
from services.core.tenancy import STREAMS

from tests.unit.deploy.k8s_docs import K8S, OVERLAYS, ROOT, of_kind, one, tenants_of

K8S_VERSION = "1.32.0"
#: The batch lane's Deployments -> the real-time twin whose code they run (docs/batch.md, "The batch lane").
TWIN = {"extraction-batch": "extraction", "triage-batch": "triage", "inference-batch": "inference",
        "tools-batch": "tools"}
BATCH = set(TWIN)
#: Kafka consumers scaled by KEDA (their consumer groups and triggers: test_code_consistency.py).
STAGES = {"hl7", "extraction", "triage", "scheduling", "writeback", "hl7out", "monitor", "extraction-batch",
          "triage-batch"}
GRPC = {"tools", "inference", "control", "tools-batch", "inference-batch"}
#: HTTP servers -> the container port their /healthz (the probes) is served on.
HTTP = {"ingest": "notify", "cdshooks": "http"}
SERVICES = STAGES | GRPC | set(HTTP)
#: ARCHITECTURE.md's flows: service -> egress it may open (besides DNS).
EGRESS = {
    "ingest": {"kafka", "postgres", "redis", "ehr"},
    "hl7": {"kafka", "postgres", "redis", "ehr"},
    "extraction": {"kafka", "postgres", "redis", "tools", "inference"},
    "triage": {"kafka", "postgres", "redis", "tools"},
    "scheduling": {"kafka", "postgres", "redis", "tools", "inference"},
    "writeback": {"kafka", "postgres", "redis", "ehr"},
    "hl7out": {"kafka", "postgres", "redis", "ehr", "hl7-engine"},  # Patient reads; MLLP to the engine
    "monitor": {"kafka", "postgres", "redis"},  # /readyz probes Redis too
    "tools": {"postgres", "redis", "ehr"},
    "inference": {"postgres", "redis", "llm"},
    "control": {"kafka", "postgres", "redis"},
    "cdshooks": {"kafka", "postgres", "redis"},  # card feedback as events on the tenant's feedback topic
    # The batch lane: extraction-batch reaches only the batch lane's own servers; triage-batch looks up
    # no owner (no tools); tools-batch reads stored notes only (no EHR).
    "extraction-batch": {"kafka", "postgres", "redis", "tools-batch", "inference-batch"},
    "triage-batch": {"kafka", "postgres", "redis"},
    "tools-batch": {"postgres", "redis"},
    "inference-batch": {"postgres", "redis", "llm"},
}
#: The backfill Job's flows: it publishes batch-events and writes the document store, nothing else.
BACKFILL_EGRESS = {"kafka", "postgres"}
SECRET_NAME = re.compile(r"(PASSWORD|DSN|SECRET|TOKEN|_KEY)$")


def deployments(docs):
    return {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}


def pod_template(workload: dict) -> dict:
    """The pod template of a Deployment or of a CronJob's Job template."""
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]
    return workload["spec"]["template"]


def workloads(docs) -> dict[str, dict]:
    """Every Deployment and the backfill CronJob (the template of each run's Job), by name."""
    return {**deployments(docs), **{d["metadata"]["name"]: d for d in of_kind(docs, "CronJob")}}


def containers(deploy):
    spec = pod_template(deploy)["spec"]
    return spec["containers"] + spec.get("initContainers", [])


def selects(selector: dict, labels: dict) -> bool:
    if "matchExpressions" in selector:
        raise AssertionError("matchExpressions not used in these manifests")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


# ---- rendering and schemas -------------------------------------------------------------------

def test_base_has_one_file_per_service():
    files = {p.stem for p in (K8S / "base").glob("*.yaml")}
    assert SERVICES <= files
    assert "ehr" not in files
    for name in SERVICES:
        kinds = {d["kind"] for d in yaml.safe_load_all((K8S / "base" / f"{name}.yaml").read_text()) if d}
        assert {"Deployment", "Service", "PodDisruptionBudget"} <= kinds, name


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: cross-check with kustomize skipped")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renderer_matches_kubectl_kustomize(overlay, rendered, renderer):
    out = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    theirs = {renderer.resource_id(d): d for d in yaml.safe_load_all(out) if d}
    ours = {renderer.resource_id(d): d for d in rendered[overlay]}
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key] == theirs[key], key


def test_renderer_refuses_unsupported_fields(tmp_path, renderer):
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: []\n")
    with pytest.raises(renderer.RenderError, match="configMapGenerator"):
        renderer.render(tmp_path)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_document_validates(overlay, rendered, crd_schemas):
    docs = rendered[overlay]
    assert len(docs) > 50
    for doc in docs:
        schema = crd_schemas.get((doc["apiVersion"], doc["kind"]))
        if schema is not None:
            errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
            assert not errors, (doc["kind"], doc["metadata"]["name"], errors)
        else:
            assert "." not in doc["apiVersion"].split("/")[0] or doc["apiVersion"].split("/")[0].endswith("k8s.io"), \
                f"no schema for {doc['apiVersion']} {doc['kind']}"
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validators_reject_broken_documents(rendered, crd_schemas):
    deploy = copy.deepcopy(deployments(rendered["prod"])["triage"])
    deploy["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = True  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, K8S_VERSION, strict=True)
    user = copy.deepcopy(one(rendered["prod"], "KafkaUser", "vigil-lakeshore"))
    user["spec"]["authorization"]["acls"][0]["resource"]["patternType"] = "prefixed"
    schema = crd_schemas[("kafka.strimzi.io/v1beta2", "KafkaUser")]
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(user))
    so = copy.deepcopy(one(rendered["prod"], "ScaledObject", "triage"))
    del so["spec"]["triggers"][0]["metadata"]["consumerGroup"]
    schema = crd_schemas[("keda.sh/v1alpha1", "ScaledObject")]
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(so))


# ---- workloads -------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_hardened(overlay, rendered):
    assert "backfill" in workloads(rendered[overlay])
    for name, deploy in workloads(rendered[overlay]).items():
        pod = pod_template(deploy)["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        for c in containers(deploy):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] >= 10000, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], name
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (name, kind)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_match_the_protocol(overlay, rendered):
    deploys = deployments(rendered[overlay])
    assert SERVICES <= set(deploys)
    for name in SERVICES:
        c = deploys[name]["spec"]["template"]["spec"]["containers"][0]
        live, ready = c["livenessProbe"], c["readinessProbe"]
        metrics = [p for p in c["ports"] if p["name"] == "metrics"]
        assert metrics and metrics[0]["containerPort"] == 9000, name
        if name in GRPC:
            # Kubelet's grpc probe speaks plaintext: health has its own port, the API (50051) is mTLS.
            assert live["grpc"]["port"] == 50052 and ready["grpc"]["port"] == 50052, name
            env = {v["name"]: v.get("value") for v in c["env"]}
            assert env[f"VIGIL_GRPC_{TWIN.get(name, name).upper()}_ADDR"] == "0.0.0.0:50051", name
        elif name in HTTP:
            # The HTTP servers answer /healthz on their own listener (no /readyz there).
            assert {p["name"] for p in c["ports"]} >= {HTTP[name]}, name
            for probe in (live, ready, c["startupProbe"]):
                assert probe["httpGet"] == {"path": "/healthz", "port": HTTP[name]}, name
        else:
            assert live["httpGet"] == {"path": "/healthz", "port": "metrics"}, name
            assert ready["httpGet"] == {"path": "/readyz", "port": "metrics"}, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_has_a_service_and_a_pdb(overlay, rendered):
    docs = rendered[overlay]
    for name, deploy in deployments(docs).items():
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert any(selects({"matchLabels": s["spec"]["selector"]}, labels) for s in of_kind(docs, "Service")
                   if "selector" in s["spec"]), name
        pdbs = [p for p in of_kind(docs, "PodDisruptionBudget") if selects(p["spec"]["selector"], labels)]
        assert len(pdbs) == 1, name


# ---- Kafka: cluster, topics, tenant users ------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_cluster_is_kraft_with_authn_and_acls(overlay, rendered):
    docs = rendered[overlay]
    kafka = one(docs, "Kafka", "vigil")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert not kafka["spec"]["kafka"]["authorization"].get("superUsers")
    listeners = kafka["spec"]["kafka"]["listeners"]
    assert all(l["tls"] and l["authentication"]["type"] in ("scram-sha-512", "tls") for l in listeners)
    assert {l["authentication"]["type"] for l in listeners} == {"scram-sha-512", "tls"}
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    pool = one(docs, "KafkaNodePool", "dual-role")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "vigil"
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    config = one(docs, "ConfigMap", "vigil-config")["data"]
    port = int(config["VIGIL_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1])
    assert any(l["port"] == port and l["authentication"]["type"] == "scram-sha-512" for l in listeners)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_tenant_has_its_topics_and_a_user_limited_to_its_prefix(overlay, rendered):
    docs = rendered[overlay]
    tenants = tenants_of(docs)
    assert tenants == ["lakeshore", "northvalley"]
    topics = {t["spec"]["topicName"] for t in of_kind(docs, "KafkaTopic")}
    for tenant in tenants:
        assert {f"vigil.{tenant}.{s}" for s in STREAMS} <= topics
        user = one(docs, "KafkaUser", f"vigil-{tenant}")
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        acls = user["spec"]["authorization"]["acls"]
        assert {a["resource"]["type"] for a in acls} == {"topic", "group"}
        for acl in acls:
            assert acl["resource"]["name"] == f"vigil.{tenant}." and acl["resource"]["patternType"] == "prefix"
            assert "All" not in acl["operations"] and "Delete" not in acl["operations"]
            assert acl.get("type", "allow") == "allow"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hl7_inbound_keeps_acknowledged_messages(overlay, rendered):
    """ingest answers AA once a message is on hl7-inbound: until the hl7 stage has used it, the topic
    is its only copy, so it outlives the other streams (at least 30 days) and is never compacted."""
    docs = rendered[overlay]
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(docs, "KafkaTopic")}
    for tenant in tenants_of(docs):
        config = topics[f"vigil.{tenant}.hl7-inbound"]["config"]
        assert config["cleanup.policy"] == "delete"
        assert config["retention.ms"] >= 30 * 24 * 3600 * 1000, (tenant, config)
        assert config["retention.ms"] >= topics[f"vigil.{tenant}.ehr-events"]["config"]["retention.ms"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_user_holds_a_cross_tenant_prefix(overlay, rendered):
    docs = rendered[overlay]
    tenants = tenants_of(docs)
    for user in of_kind(docs, "KafkaUser"):
        owner = user["metadata"]["labels"].get("vigil.io/tenant")
        for acl in user["spec"].get("authorization", {}).get("acls", []):
            res = acl["resource"]
            assert res["type"] in ("topic", "group"), (user["metadata"]["name"], res)
            if res["patternType"] == "prefix":
                allowed = {f"vigil.{owner}."} if owner else {"vigil-platform."}
                assert res["name"] in allowed, (user["metadata"]["name"], res)
            else:
                assert res["name"] in {f"vigil.{t}.{s}" for t in tenants for s in STREAMS}, res
    assert "authorization" not in one(docs, "KafkaUser", "vigil-runtime")["spec"]


# ---- configuration and secrets -----------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_map_is_accepted_by_settings(overlay, rendered):
    data = dict(one(rendered[overlay], "ConfigMap", "vigil-config")["data"])
    assert not any(SECRET_NAME.search(k) for k in data), "secret-looking key in the ConfigMap"
    env = {**data, "VIGIL_KAFKA_SASL_PASSWORD": "from-secret", "VIGIL_POSTGRES_DSN": "postgresql://vigil@postgres:5432/vigil"}
    settings = Settings.from_env(env)
    assert settings.environment == ("prod" if overlay == "prod" else "dev")
    assert settings.kafka.security_protocol == "SASL_SSL" and settings.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert str(settings.tenants_file) == "/etc/vigil/tenants.toml"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_only_by_reference(overlay, rendered):
    docs = rendered[overlay]
    assert not of_kind(docs, "Secret")
    for name, deploy in workloads(docs).items():
        for c in containers(deploy):
            for var in c.get("env", []):
                if var["name"].endswith("_FILE"):
                    assert var["value"].startswith("/var/run/secrets/vigil/"), (name, var["name"])
                elif SECRET_NAME.search(var["name"]):
                    assert "value" not in var and "secretKeyRef" in var["valueFrom"], (name, var["name"])


def test_no_secret_material_in_deploy_files():
    patterns = [re.compile(p) for p in (r"-----BEGIN [A-Z ]*PRIVATE KEY", r"\w+://[^/\s:@]+:[^@\s]+@",
                                         r"(?i)password\s*[:=]\s*[\"']?[A-Za-z0-9+/]{6,}", r"(?m)^kind:\s*Secret\s*$")]
    files = [p for p in (ROOT / "deploy").rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ".json")]
    files += [ROOT / "Dockerfile"]
    assert len(files) > 15
    for path in files:
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            assert not pattern.search(text), f"{path.relative_to(ROOT)} matches {pattern.pattern}"


# ---- network ---------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_default_deny_is_present(overlay, rendered):
    deny = one(rendered[overlay], "NetworkPolicy", "default-deny-all")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_egress_is_exactly_the_architecture_flows(overlay, rendered):
    docs = rendered[overlay]
    policies = [p for p in of_kind(docs, "NetworkPolicy") if "Egress" in p["spec"]["policyTypes"] and p["spec"].get("egress")]
    for name, expected in EGRESS.items():
        labels = deployments(docs)[name]["spec"]["template"]["metadata"]["labels"]
        flows = {p["metadata"]["name"].removeprefix("egress-") for p in policies if selects(p["spec"]["podSelector"], labels)}
        flows.discard("allow-dns")
        if overlay == "dev":
            flows = {f.replace("ehr-sandbox", "ehr") for f in flows}
        assert flows == expected, (overlay, name, flows)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_servers_admit_only_their_clients(overlay, rendered):
    docs = rendered[overlay]
    deploys = deployments(docs)
    for server, clients in (("tools", {"extraction", "triage", "scheduling"}), ("inference", {"extraction", "scheduling"}),
                            ("tools-batch", {"extraction-batch"}), ("inference-batch", {"extraction-batch"})):
        policy = one(docs, "NetworkPolicy", f"ingress-{server}")
        peers = [peer["podSelector"] for rule in policy["spec"]["ingress"] for peer in rule["from"]]
        admitted = {n for n, d in deploys.items()
                    if any(selects(p, d["spec"]["template"]["metadata"]["labels"]) for p in peers)}
        assert admitted == clients, (server, admitted)


def test_llm_egress_excludes_private_ranges(rendered):
    policy = one(rendered["prod"], "NetworkPolicy", "egress-llm")
    block = policy["spec"]["egress"][0]["to"][0]["ipBlock"]
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(block["except"])
    assert [p["port"] for p in policy["spec"]["egress"][0]["ports"]] == [443]


# ---- overlays --------------------------------------------------------------------------------

def test_ehr_sandbox_only_in_dev(rendered):
    assert "ehr" in deployments(rendered["dev"])
    assert "ehr" not in deployments(rendered["prod"])


def test_prod_pins_image_digest_and_spreads_pods(rendered):
    deploys = deployments(rendered["prod"])
    for name, deploy in deploys.items():
        for c in containers(deploy):
            assert re.fullmatch(r"registry\.example\.org/vigil/vigil@sha256:[0-9a-f]{64}", c["image"]), (name, c["image"])
        pod = deploy["spec"]["template"]["spec"]
        keys = {t["topologyKey"] for t in pod["topologySpreadConstraints"]}
        assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, name
        assert pod["affinity"]["podAntiAffinity"], name
        if name not in STAGES:
            assert deploy["spec"]["replicas"] >= 3, name
    for so in of_kind(rendered["prod"], "ScaledObject"):
        assert so["spec"]["minReplicaCount"] >= 2


def test_dev_runs_single_replicas_and_a_single_broker(rendered):
    docs = rendered["dev"]
    assert one(docs, "KafkaNodePool", "dual-role")["spec"]["replicas"] == 1
    assert all(t["spec"]["replicas"] == 1 for t in of_kind(docs, "KafkaTopic"))
    assert all(d["spec"].get("replicas", 1) == 1 for d in of_kind(docs, "Deployment"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_callers_sign_and_servers_verify(overlay, rendered):
    deploys = deployments(rendered[overlay])
    assert one(rendered[overlay], "ConfigMap", "vigil-config")["data"]["VIGIL_GRPC_TOKEN_ALG"] == "EdDSA"
    client_labels = {f"vigil.io/{s}-client" for s in ("tools", "inference", "tools-batch", "inference-batch")}
    callers = {n for n, d in deploys.items() if client_labels & set(d["spec"]["template"]["metadata"]["labels"])}
    assert callers == {"extraction", "triage", "scheduling", "extraction-batch"}
    for name, deploy in deploys.items():
        env = {v["name"]: v.get("value") for v in deploy["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        mounts = {m["mountPath"] for m in deploy["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
        signs = "VIGIL_GRPC_TOKEN_PRIVATE_KEY_FILE" in env
        assert signs == (name in callers | {"control"}), name
        # triage-batch calls no gRPC service but builds its gRPC settings at start-up: it holds only
        # the verifying key, so it cannot mint a credential (test_triage_batch_cannot_mint_a_credential).
        assert ("VIGIL_GRPC_TOKEN_PUBLIC_KEY_FILE" in env) == (name in GRPC | {"triage-batch"}), name
        for var in ("VIGIL_GRPC_TOKEN_PRIVATE_KEY_FILE", "VIGIL_GRPC_TOKEN_PUBLIC_KEY_FILE"):
            if var in env:
                assert env[var].rsplit("/", 1)[0] in mounts, (name, var)


# ---- the batch lane --------------------------------------------------------------------------

def priority_of(docs, workload: dict) -> int:
    """The scheduling priority a workload's pods get (0: no PriorityClass and no global default)."""
    classes = {c["metadata"]["name"]: c for c in of_kind(docs, "PriorityClass")}
    assert not [c for c in classes.values() if c.get("globalDefault")], "a global default would rank unclassed pods"
    name = pod_template(workload)["spec"].get("priorityClassName")
    return classes[name]["value"] if name else 0


def effective_env(docs, workload: dict) -> dict[str, str]:
    """What the container sees: vigil-config (envFrom), then its own env values on top."""
    env = dict(one(docs, "ConfigMap", "vigil-config")["data"])
    env.update({v["name"]: v["value"] for v in containers(workload)[0].get("env", []) if "value" in v})
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_batch_lane_deployments_run_the_batch_lane(overlay, rendered):
    deploys = deployments(rendered[overlay])
    assert BATCH <= set(deploys)
    for name, twin in TWIN.items():
        mine, theirs = containers(deploys[name])[0]["command"], containers(deploys[twin])[0]["command"]
        if name in STAGES:
            assert mine == theirs + ["--lane", "batch"], (name, mine)
        else:  # the gRPC servers have no lanes: the same server, another Deployment
            assert mine == theirs, (name, mine)
        labels = deploys[name]["spec"]["template"]["metadata"]["labels"]
        assert labels["vigil.io/lane"] == "batch" and labels["app.kubernetes.io/name"] == name
        assert effective_env(rendered[overlay], deploys[name])["VIGIL_SERVICE"] == name
    for name, deploy in deploys.items():
        if name not in BATCH:
            assert "--lane" not in containers(deploy)[0]["command"], name
            assert "vigil.io/lane" not in deploy["spec"]["template"]["metadata"]["labels"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_batch_lane_has_lower_priority_than_every_realtime_deployment(overlay, rendered):
    docs = rendered[overlay]
    loads = workloads(docs)
    batch = {n: priority_of(docs, loads[n]) for n in BATCH | {"backfill"}}
    realtime = {n: priority_of(docs, loads[n]) for n in SERVICES - BATCH}
    assert realtime and batch
    assert max(batch.values()) < min(realtime.values()), (batch, realtime)
    for name in BATCH | {"backfill"}:
        assert pod_template(loads[name])["spec"]["priorityClassName"] == "vigil-batch", name
    batch_class = one(docs, "PriorityClass", "vigil-batch")
    # Batch pods never push anything off a node; real-time pods may push batch pods off.
    assert batch_class["preemptionPolicy"] == "Never"
    assert one(docs, "PriorityClass", "vigil-realtime").get("preemptionPolicy", "PreemptLowerPriority") == \
        "PreemptLowerPriority"
    # A cluster autoscaler ignores pending pods below -10 (its expendable cutoff): a backfill must
    # still get nodes.
    assert batch_class["value"] > -10
    # Under CPU contention the weight follows the request: each batch pod asks for less than its twin.
    deploys = deployments(docs)
    cpu = lambda d: containers(d)[0]["resources"]["requests"]["cpu"]  # noqa: E731
    millis = lambda v: int(v[:-1]) if v.endswith("m") else int(float(v) * 1000)  # noqa: E731
    for name, twin in TWIN.items():
        assert millis(cpu(deploys[name])) < millis(cpu(deploys[twin])), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_batch_extraction_calls_only_the_batch_servers(overlay, rendered):
    docs = rendered[overlay]
    deploys = deployments(docs)
    services = {s["metadata"]["name"]: s for s in of_kind(docs, "Service")}
    for extraction, lane_servers in (("extraction", ("inference", "tools")),
                                     ("extraction-batch", ("inference-batch", "tools-batch"))):
        env = effective_env(docs, deploys[extraction])
        for var, server in zip(("VIGIL_GRPC_INFERENCE_ADDR", "VIGIL_GRPC_TOOLS_ADDR"), lane_servers):
            host, _, port = env[var].rpartition(":")
            service, namespace = host.split(".")[:2]
            assert (service, namespace) == (server, "vigil"), (extraction, var, env[var])
            # The Service of that name selects exactly the server's pods on its gRPC port.
            spec = services[service]["spec"]
            labels = deploys[server]["spec"]["template"]["metadata"]["labels"]
            assert selects({"matchLabels": spec["selector"]}, labels), (extraction, var)
            assert [n for n, d in deploys.items()
                    if selects({"matchLabels": spec["selector"]}, d["spec"]["template"]["metadata"]["labels"])] == [server]
            assert int(port) in {p["port"] for p in spec["ports"] if p["name"] == "grpc"}, (extraction, var)
            # and the network lets the call through (egress of the caller, ingress of the server).
            assert f"vigil.io/{server}-client" in deploys[extraction]["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_batch_servers_match_the_real_time_ones(overlay, rendered):
    """Same ports, probes, volumes and settings as their twin, except what the lane changes."""
    deploys = deployments(rendered[overlay])
    for name in ("inference-batch", "tools-batch"):
        mine, theirs = containers(deploys[name])[0], containers(deploys[TWIN[name]])[0]
        assert mine["ports"] == theirs["ports"], name
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert mine[probe] == theirs[probe], (name, probe)
        env, twin_env = ({v["name"]: v for v in c["env"]} for c in (mine, theirs))
        assert set(env) - set(twin_env) <= {"VIGIL_RULES_WORKERS"}, name
        assert set(twin_env) - set(env) == set(), name
    workers = effective_env(rendered[overlay], deploys["inference-batch"])["VIGIL_RULES_WORKERS"]
    limit = containers(deploys["inference-batch"])[0]["resources"]["limits"]["cpu"]
    assert int(workers) == int(float(limit)), "one rules worker per core of the limit (`auto` counts the node's)"


def test_triage_batch_cannot_mint_a_credential(rendered, tmp_path):
    """triage-batch loads its gRPC settings (the stage builds them at start-up) from the verifying
    key alone, and any attempt to call a gRPC service fails for want of a signing key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.core.config import ConfigError
    from services.core.grpc.settings import GrpcSettings
    from services.core.tokens import issue

    docs = rendered["prod"]
    env = effective_env(docs, deployments(docs)["triage-batch"])
    public = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for var, value in list(env.items()):
        if var.endswith("_FILE") and value.startswith("/var/run/secrets/vigil/"):
            local = tmp_path / value.removeprefix("/var/run/secrets/vigil/")
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(public if var == "VIGIL_GRPC_TOKEN_PUBLIC_KEY_FILE" else b"pem")
            env[var] = str(local)
    assert "VIGIL_GRPC_TOKEN_PRIVATE_KEY_FILE" not in env
    settings = GrpcSettings.from_env(env)
    assert settings.tls == "mtls" and settings.tokens.signing_key is None
    with pytest.raises(ConfigError, match="signing key"):
        issue(settings.tokens, sub="triage", tenant="northvalley")


# ---- the backfill Job ------------------------------------------------------------------------

def backfill_run_command():
    """The click command of `vigil backfill run` (the real CLI, loaded as `vigil` loads it)."""
    import typer

    from services.cli import app

    top = typer.main.get_command(app)
    ctx = top.make_context("vigil", ["backfill", "run", "--help"], resilient_parsing=True)
    group = top.get_command(ctx, "backfill")
    return group.get_command(ctx, "run")


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion of a container's args from its env."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), a) for a in args]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_backfill_job_template(overlay, rendered):
    docs = rendered[overlay]
    cron = one(docs, "CronJob", "backfill")
    # A template only: never scheduled, never two runs from the schedule.
    assert cron["spec"]["suspend"] is True and cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    # A failed pod restarts in place and resumes the named run from its checkpoint; bounded.
    assert pod["restartPolicy"] == "OnFailure"
    assert isinstance(job["backoffLimit"], int) and 1 <= job["backoffLimit"] <= 20
    (c,) = pod["containers"]
    env = {v["name"]: v.get("value") for v in c["env"]}
    run = {"BACKFILL_TENANT": "northvalley", "BACKFILL_SOURCE": "omop", "BACKFILL_PATH": "/data/northvalley/note.csv",
           "BACKFILL_NAME": "nv-2025"}
    assert {k: v for k, v in env.items() if k.startswith("BACKFILL_")} == dict.fromkeys(run, "")
    argv = c["command"] + expand(c["args"], {**env, **run})
    assert argv[:3] == ["vigil", "backfill", "run"]
    params = backfill_run_command().make_context("run", argv[3:]).params
    assert (params["tenant"], params["source"], params["name"], str(params["path"])) == \
        ("northvalley", "omop", "nv-2025", "/data/northvalley/note.csv")
    assert params["silent"] is True
    # The source is read from the PVC, mounted read-only where BACKFILL_PATH points.
    volumes = {v["name"]: v for v in pod["volumes"]}
    data = [m for m in c["volumeMounts"] if "persistentVolumeClaim" in volumes[m["name"]]]
    assert len(data) == 1 and data[0]["readOnly"] is True and run["BACKFILL_PATH"].startswith(data[0]["mountPath"] + "/")
    claim = volumes[data[0]["name"]]["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    one(docs, "PersistentVolumeClaim", claim["claimName"])
    # Its image is the overlay's, like every service's.
    assert c["image"] == containers(deployments(docs)["ingest"])[0]["image"]
    # Exactly its flows: Kafka and PostgreSQL (egress policies selecting its pod labels).
    labels = job["template"]["metadata"]["labels"]
    flows = {p["metadata"]["name"].removeprefix("egress-") for p in of_kind(docs, "NetworkPolicy")
             if "Egress" in p["spec"]["policyTypes"] and p["spec"].get("egress")
             and selects(p["spec"]["podSelector"], labels)}
    flows.discard("allow-dns")
    assert flows == BACKFILL_EGRESS, flows


def test_backfill_args_are_checked_against_the_cli():
    """The argument check above fails for an option `vigil backfill run` does not have."""
    command = backfill_run_command()
    command.make_context("run", ["--tenant", "t", "--source", "omop", "/data/x", "--name", "n", "--silent"])
    with pytest.raises(Exception, match="No such option"):
        command.make_context("run", ["--tenant", "t", "--source", "omop", "/data/x", "--name", "n", "--sillent"])
    assert expand(["$(A)", "x$(B)", "$(C)"], {"A": "1", "B": "2"}) == ["1", "x2", "$(C)"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: the documented run recipe not checked")
def test_documented_run_recipe_sets_the_run(rendered, tmp_path):
    """docs/batch.md's recipe: the Job `kubectl create job --from=cronjob/backfill` makes (its
    jobTemplate), then `kubectl set env --local` fills in the run; the result keeps everything else."""
    cron = one(rendered["prod"], "CronJob", "backfill")
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "backfill-nv-2025", "namespace": "vigil",
                        "annotations": {"cronjob.kubernetes.io/instantiate": "manual"}},
           "spec": copy.deepcopy(cron["spec"]["jobTemplate"]["spec"])}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    out = subprocess.run(["kubectl", "set", "env", "--local", "-f", str(path), "-o", "yaml",
                          "BACKFILL_TENANT=northvalley", "BACKFILL_SOURCE=omop",
                          "BACKFILL_PATH=/data/northvalley/note.csv", "BACKFILL_NAME=nv-2025"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    made = yaml.safe_load(out)
    env = {v["name"]: v.get("value") for v in made["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BACKFILL_TENANT"] == "northvalley" and env["BACKFILL_NAME"] == "nv-2025"
    assert made["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert made["spec"]["backoffLimit"] == job["spec"]["backoffLimit"]
    kubernetes_validate.validate(made, K8S_VERSION, strict=True)
