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
#: Kafka consumers scaled by KEDA (their consumer groups and triggers: test_code_consistency.py).
STAGES = {"hl7", "extraction", "triage", "scheduling", "writeback", "hl7out", "monitor"}
GRPC = {"tools", "inference", "control"}
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
}
SECRET_NAME = re.compile(r"(PASSWORD|DSN|SECRET|TOKEN|_KEY)$")


def deployments(docs):
    return {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}


def containers(deploy):
    spec = deploy["spec"]["template"]["spec"]
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
    for name, deploy in deployments(rendered[overlay]).items():
        pod = deploy["spec"]["template"]["spec"]
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
            assert env[f"VIGIL_GRPC_{name.upper()}_ADDR"] == "0.0.0.0:50051", name
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
    for name, deploy in deployments(docs).items():
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
    for server, clients in (("tools", {"extraction", "triage", "scheduling"}), ("inference", {"extraction", "scheduling"})):
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
    callers = {n for n, d in deploys.items()
               if {"vigil.io/tools-client", "vigil.io/inference-client"} & set(d["spec"]["template"]["metadata"]["labels"])}
    assert callers == {"extraction", "triage", "scheduling"}
    for name, deploy in deploys.items():
        env = {v["name"]: v.get("value") for v in deploy["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        mounts = {m["mountPath"] for m in deploy["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
        signs = "VIGIL_GRPC_TOKEN_PRIVATE_KEY_FILE" in env
        assert signs == (name in callers | {"control"}), name
        assert ("VIGIL_GRPC_TOKEN_PUBLIC_KEY_FILE" in env) == (name in GRPC), name
        for var in ("VIGIL_GRPC_TOKEN_PRIVATE_KEY_FILE", "VIGIL_GRPC_TOKEN_PUBLIC_KEY_FILE"):
            if var in env:
                assert env[var].rsplit("/", 1)[0] in mounts, (name, var)
