"""The manifests against the code they run: every command starts a module that exists, every
setting passed is one the code reads and parses, each stage's consumer groups (read from the
stage's own StageSpecs) are what KEDA scales on and what the Kafka ACLs admit, the monitor has
no changelog topics, and each tenant's credentials reach exactly the service that uses them."""
from __future__ import annotations

import ast
import importlib
import re
import tomllib
from functools import cache
from pathlib import Path

import pytest

from services.cdshooks.config import CdsSettings
from services.commands.serve import SERVICES as SERVE_MODULES
from services.core.config import Settings
from services.core.lanes import BATCH, LANES
from services.core.tenancy import Registry
from services.ingest.config import IngestSettings
from services.ingest.directory import DEFAULT_SCOPE as INGEST_DEFAULT_SCOPE
from services.monitor.config import MonitorSettings
from services.tools.config import DEFAULT_SCOPE as TOOLS_DEFAULT_SCOPE

from tests.unit.deploy.k8s_docs import OVERLAYS, ROOT, of_kind, one, tenants_of

SERVICES_DIR = ROOT / "services"
#: Stages built on services.core.bus (StageSpec); the monitor is a faust worker.
BUS_STAGES = ("hl7", "extraction", "triage", "scheduling", "writeback", "hl7out")
#: HTTP Deployments that also run stages (fixed replicas, not scaled on lag): cdshooks' read model.
HOSTED_STAGES = ("cdshooks",)
#: Deployments whose code is not the package services/<name>/: name -> (entry module, package dir).
#: The hl7 stage lives in the ingest package (it shares ingest's HL7 parsing and stores).
OWN_PACKAGE = {"hl7": ("services.ingest.hl7stage.app", "ingest/hl7stage"),
               # the command layer wires the monitor's promotion gates into control (services/commands)
               "control": ("services.commands.control_service", "control")}
#: The batch lane's Deployments run their real-time twin's code (stages with ``--lane batch``).
BATCH_TWINS = {"extraction-batch": "extraction", "triage-batch": "triage", "inference-batch": "inference",
               "tools-batch": "tools"}
#: The batch lane's stages (KEDA-scaled on their own consumer groups).
BATCH_STAGES = ("extraction-batch", "triage-batch")
#: Settings the manifests pass that no code reads, each with its reason. The test below fails
#: as soon as the code starts reading one of them, so this list cannot go stale.
NOT_READ = {
    "VIGIL_SERVICE": "names the process for operators (kubectl exec ... env); informational",
}
#: Registry settings prefix -> the one service whose SMART client it configures (core/ehraccess).
SMART_CLIENTS = {"fhir": "tools", "writeback": "writeback", "ehr": "ingest", "hl7": "hl7", "hl7out": "hl7out"}


def deployments(docs):
    return {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}


def container(deploy) -> dict:
    return deploy["spec"]["template"]["spec"]["containers"][0]


def env_of(docs, deploy) -> dict[str, str]:
    """The container's plain environment: vigil-config, then its own values (secrets left out)."""
    env = dict(one(docs, "ConfigMap", "vigil-config")["data"])
    env.update({v["name"]: v["value"] for v in container(deploy).get("env", []) if "value" in v})
    return env


def ports(deploy) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(deploy).get("ports", [])}


@cache
def source_of(package: str) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((SERVICES_DIR / package).rglob("*.py")))


@cache
def all_service_source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(SERVICES_DIR.rglob("*.py")))


def cli_groups() -> set[str]:
    text = (SERVICES_DIR / "cli.py").read_text(encoding="utf-8")
    table = text[text.index("GROUPS"):]
    table = table[table.index("= ["):table.index("\n]")]
    return set(re.findall(r'\(\s*"([a-z-]+)"\s*,', table))


def entry_module(command: list[str]) -> str | None:
    """The module a container command runs (``python -m M`` or ``vigil serve S``), else None."""
    if command[:2] == ["python", "-m"]:
        return command[2]
    if command[:2] == ["vigil", "serve"]:
        assert command[2] in SERVE_MODULES, f"`vigil serve {command[2]}` does not exist"
        return SERVE_MODULES[command[2]]
    return None


def module_file(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def app_module(name: str) -> str:
    """The module a Deployment named ``name`` must run."""
    name = BATCH_TWINS.get(name, name)
    return OWN_PACKAGE[name][0] if name in OWN_PACKAGE else f"services.{name}.app"


def package_of(name: str) -> str:
    """The code of a Deployment named ``name``: a directory under services/ (it must exist)."""
    name = BATCH_TWINS.get(name, name)
    package = OWN_PACKAGE[name][1] if name in OWN_PACKAGE else name
    assert (SERVICES_DIR / package).is_dir(), f"{name}: services/{package} does not exist"
    return package


# ---- commands ----------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_command_runs_code_that_exists(overlay, rendered):
    for name, deploy in deployments(rendered[overlay]).items():
        for c in deploy["spec"]["template"]["spec"]["containers"] + deploy["spec"]["template"]["spec"].get(
                "initContainers", []):
            command = c["command"]
            module = entry_module(command)
            if module is None:
                assert command[0] == "vigil" and command[1] in cli_groups(), (name, command)
                group_cli = SERVICES_DIR / command[1] / "cli.py"
                assert f"def {command[2]}(" in group_cli.read_text(encoding="utf-8"), (name, command)
                continue
            path = module_file(module)
            assert path.is_file(), f"{name}: {module} does not exist in the repository ({path.relative_to(ROOT)})"
            text = path.read_text(encoding="utf-8")
            if command[0] == "python":
                assert 'if __name__ == "__main__":' in text, f"{name}: {module} has no __main__ entry point"
            else:
                assert "async def serve(" in text, f"{name}: {module} has no serve() for `vigil serve`"
            assert module == app_module(name), (name, module)


def test_entrypoint_check_refuses_a_missing_module():
    assert not module_file("services.nosuchservice.app").exists()
    assert module_file(entry_module(["python", "-m", "services.triage.app"])).is_file()
    assert module_file(app_module("hl7")).is_file() and app_module("triage") == "services.triage.app"
    with pytest.raises(AssertionError, match="does not exist"):
        package_of("nosuchservice")
    with pytest.raises(AssertionError, match="does not exist"):
        entry_module(["vigil", "serve", "nosuchservice"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scraped_pods_serve_metrics(overlay, rendered):
    """A pod annotated for Prometheus runs an entrypoint that serves VIGIL_METRICS_PORT: `vigil
    serve` starts it; `python -m` modules must do it themselves (stage host, faust web, control)."""
    docs = rendered[overlay]
    assert one(docs, "ConfigMap", "vigil-config")["data"]["VIGIL_METRICS_PORT"] == "9000"
    for name, deploy in deployments(docs).items():
        annotations = deploy["spec"]["template"]["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        assert annotations["prometheus.io/port"] == "9000" and ports(deploy).get("metrics") == 9000, name
        command = container(deploy)["command"]
        if command[:2] == ["python", "-m"]:
            text = module_file(command[2]).read_text(encoding="utf-8")
            assert "VIGIL_METRICS_PORT" in text or "serve_stage(" in text, f"{name}: {command[2]} serves no metrics"
        else:
            assert command[:2] == ["vigil", "serve"], (name, command)


# ---- settings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_passed_is_read_by_the_code(overlay, rendered):
    docs = rendered[overlay]
    names = set(one(docs, "ConfigMap", "vigil-config")["data"])
    for deploy in deployments(docs).values():
        names |= {v["name"] for v in container(deploy).get("env", [])}
    source = all_service_source()
    for name in sorted(names):
        read = f'"{name}"' in source or f"{name}=" in source or f"`{name}`" in source \
            or (name.startswith("VIGIL_GRPC_") and name.endswith("_ADDR") and 'f"VIGIL_GRPC_{' in source)
        if name in NOT_READ:
            assert not read, f"{name} is read by the code now: drop it from NOT_READ"
        else:
            assert read, f"{name} is passed by the manifests but read by no service"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingest_listens_where_its_ports_point(overlay, rendered):
    docs = rendered[overlay]
    deploy = deployments(docs)["ingest"]
    ingest = IngestSettings.from_env(env_of(docs, deploy))
    assert ingest.http_host == "0.0.0.0" and ingest.mllp_host == "0.0.0.0"
    assert ingest.http_port == ports(deploy)["notify"] and ingest.mllp_port == ports(deploy)["mllp"]
    service = {p["name"]: p for p in one(docs, "Service", "ingest")["spec"]["ports"]}
    assert service["notify"]["port"] == ingest.http_port and service["mllp"]["port"] == ingest.mllp_port
    assert ingest.public_url.startswith("https://" if overlay == "prod" else "http://")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_cdshooks_listens_where_its_port_points(overlay, rendered):
    docs = rendered[overlay]
    deploy = deployments(docs)["cdshooks"]
    env = env_of(docs, deploy)
    cds = CdsSettings.from_env(env, Settings.from_env({**env, "VIGIL_KAFKA_SASL_PASSWORD": "x"}).ehr_url)
    assert cds.port == ports(deploy)["http"] == 8085
    assert {p["port"] for p in one(docs, "Service", "cdshooks")["spec"]["ports"]} == {8085, 9000}
    assert cds.public_url and cds.public_url.startswith("https://" if overlay == "prod" else "http://")
    policy = one(docs, "NetworkPolicy", "ingress-cdshooks")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "cdshooks"}
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [8085]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_control_console_port_matches(overlay, rendered):
    deploy = deployments(rendered[overlay])["control"]
    addr = env_of(rendered[overlay], deploy)["VIGIL_CONTROL_CONSOLE_ADDR"]
    host, _, port = addr.rpartition(":")
    assert host == "0.0.0.0" and int(port) == ports(deploy)["console"]
    policy = one(rendered[overlay], "NetworkPolicy", "ingress-control-console")["spec"]
    assert int(port) in {p["port"] for rule in policy["ingress"] for p in rule["ports"]}


def test_services_holding_tenant_credentials_get_the_master_key(rendered):
    """VIGIL_ENV=prod refuses to start without the master secret wherever SecretSettings is
    read (tenant PostgreSQL roles, Redis users, data keys); services without it do not get it."""
    for name, deploy in deployments(rendered["prod"]).items():
        env = {v["name"]: v for v in container(deploy).get("env", [])}
        if "SecretSettings" in source_of(package_of(name)):
            assert "VIGIL_MASTER_KEY" in env, f"{name} reads SecretSettings: VIGIL_ENV=prod needs VIGIL_MASTER_KEY"
            ref = env["VIGIL_MASTER_KEY"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "vigil-master-key", "key": "master-key"}, name
        else:
            assert "VIGIL_MASTER_KEY" not in env, name


# ---- consumer groups, scaling, Kafka ACLs ------------------------------------------------------

def stage_specs(stage: str) -> tuple[tuple[str, str], ...]:
    """The real-time lane's (spec name, input stream) of the stage (what its Deployment consumes)."""
    return tuple(s for s in all_stage_specs(stage) if not s[0].endswith(LANES[BATCH].suffix))


def batch_specs(stage: str) -> tuple[tuple[str, str], ...]:
    """The batch lane's specs of the stage (``--lane batch``: own consumer groups, own topics)."""
    return tuple(s for s in all_stage_specs(stage) if s[0].endswith(LANES[BATCH].suffix))


@cache
def all_stage_specs(stage: str) -> tuple[tuple[str, str], ...]:
    """(spec name, input stream) of every StageSpec(...) call in the stage's app module, both
    evaluated in the module's namespace (constants such as AGENT or HL7_INBOUND, f-strings)."""
    module = importlib.import_module(app_module(stage))
    tree = ast.parse(module_file(module.__name__).read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "StageSpec":
            kw = {k.arg: k.value for k in node.keywords}
            name, stream = (eval(compile(ast.Expression(kw[k]), "<spec>", "eval"), vars(module))  # noqa: S307
                            for k in ("name", "input_stream"))
            assert isinstance(name, str) and isinstance(stream, str), (stage, name, stream)
            out.append((name, stream))
    assert out, f"no StageSpec in {module.__name__}"
    return tuple(out)


def monitor_groups(docs) -> tuple[str, tuple[str, ...]]:
    """The monitor's consumer group (= faust app id) and the tenant streams it consumes."""
    monitor = importlib.import_module("services.monitor.app")
    settings = MonitorSettings.from_env(env_of(docs, deployments(docs)["monitor"]))
    return settings.app_id, monitor.STREAMS


def expected_lag(docs, stage: str) -> set[tuple[str, str, str]]:
    """(consumer group, topic, TriggerAuthentication) the stage's ScaledObject must watch."""
    tenants = tenants_of(docs)
    if stage == "monitor":
        group, streams = monitor_groups(docs)
        return {(group, f"vigil.{t}.{s}", "kafka-platform") for t in tenants for s in streams}
    specs = batch_specs(BATCH_TWINS[stage]) if stage in BATCH_TWINS else stage_specs(stage)
    return {(f"vigil.{t}.{name}", f"vigil.{t}.{stream}", f"kafka-{t}") for t in tenants for name, stream in specs}


def test_stage_specs_are_read_from_the_code():
    assert stage_specs("triage") == (("triage", "findings"), ("triage-feedback", "feedback"))
    assert stage_specs("writeback") == (("writeback", "actions"),)
    assert all(stream for _, stream in stage_specs("scheduling"))
    assert stage_specs("hl7") == (("hl7", "hl7-inbound"),)
    assert batch_specs("extraction") == (("extraction-batch", "batch-events"),)
    assert batch_specs("triage") == (("triage-batch", "batch-findings"),)
    assert stage_specs("cdshooks") == (("cdshooks-actions", "actions"), ("cdshooks-feedback", "feedback"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_stage_scales_on_the_lag_of_each_of_its_groups(overlay, rendered):
    docs = rendered[overlay]
    auths = {a["metadata"]["name"]: a for a in of_kind(docs, "TriggerAuthentication")}
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(docs, "KafkaTopic")}
    assert not of_kind(docs, "HorizontalPodAutoscaler")
    for stage in (*BUS_STAGES, "monitor", *BATCH_STAGES):
        so = one(docs, "ScaledObject", stage)
        assert so["spec"]["scaleTargetRef"]["name"] == stage
        assert "replicas" not in deployments(docs)[stage]["spec"], "KEDA owns a stage's replicas"
        triggers = so["spec"]["triggers"]
        assert len({t["name"] for t in triggers}) == len(triggers), stage
        watched = {(t["metadata"]["consumerGroup"], t["metadata"]["topic"], t["authenticationRef"]["name"])
                   for t in triggers if t["type"] == "kafka"}
        assert watched == expected_lag(docs, stage), stage
        for trig in triggers:
            # Partitions bound consumer parallelism: more replicas than partitions would sit idle.
            assert so["spec"]["maxReplicaCount"] <= partitions[trig["metadata"]["topic"]], stage
            refs = auths[trig["authenticationRef"]["name"]]["spec"]["secretTargetRef"]
            owner = "vigil-platform" if stage == "monitor" else f"vigil-{trig['metadata']['topic'].split('.')[1]}"
            assert {r["name"] for r in refs if r["parameter"] == "password"} == {owner}, (stage, trig["name"])
    # A trigger watching the wrong group is caught; the batch lane watches none of the real-time groups.
    assert expected_lag(docs, "writeback") != expected_lag(docs, "triage")
    assert expected_lag(docs, "extraction-batch") == {
        (f"vigil.{t}.extraction-batch", f"vigil.{t}.batch-events", f"kafka-{t}") for t in tenants_of(docs)}
    assert not expected_lag(docs, "triage-batch") & expected_lag(docs, "triage")


def _allows(acls: list[dict], kind: str, name: str, operation: str) -> bool:
    for acl in acls:
        res = acl["resource"]
        hit = res["name"] == name if res["patternType"] == "literal" else name.startswith(res["name"])
        if res["type"] == kind and hit and operation in acl["operations"]:
            return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_users_admit_every_group_the_code_uses(overlay, rendered):
    docs = rendered[overlay]
    for tenant in tenants_of(docs):
        acls = one(docs, "KafkaUser", f"vigil-{tenant}")["spec"]["authorization"]["acls"]
        for stage in (*BUS_STAGES, *HOSTED_STAGES):
            for name, stream in all_stage_specs(stage):
                assert _allows(acls, "group", f"vigil.{tenant}.{name}", "Read"), (tenant, name)
                assert _allows(acls, "topic", f"vigil.{tenant}.{stream}", "Read"), (tenant, stream)
                assert _allows(acls, "topic", f"vigil.{tenant}.{name}.retry.1", "Create"), (tenant, name)
    platform = one(docs, "KafkaUser", "vigil-platform")["spec"]["authorization"]["acls"]
    # control (vigil-platform) replays dead letters into the stage's input topic, in either lane.
    for tenant in tenants_of(docs):
        for stage in (*BUS_STAGES, *HOSTED_STAGES):
            for name, stream in all_stage_specs(stage):
                for op in ("Write", "Describe"):
                    assert _allows(platform, "topic", f"vigil.{tenant}.{stream}", op), (tenant, name, stream, op)
    group, streams = monitor_groups(docs)
    assert _allows(platform, "group", group, "Read") and _allows(platform, "group", group, "Describe")
    for tenant in tenants_of(docs):
        for stream in streams:
            assert _allows(platform, "topic", f"vigil.{tenant}.{stream}", "Read"), (tenant, stream)
    assert not _allows(platform, "group", f"vigil.{tenants_of(docs)[0]}.triage", "Read")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topic_partitions_follow_the_registry(overlay, rendered):
    """Stages create retry topics with the registry's partition count; it must equal the partitions
    of the tenant streams the manifests create. The monitor keeps no faust tables: no changelogs."""
    docs = rendered[overlay]
    registry = tomllib.loads(one(docs, "ConfigMap", "vigil-tenants")["data"]["tenants.toml"])["tenants"]
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(docs, "KafkaTopic")}
    for tenant, spec in registry.items():
        for name, topic in topics.items():
            if name.startswith(f"vigil.{tenant}."):
                assert topic["partitions"] == spec["partitions"], (overlay, name)
    assert not [name for name in topics if name.startswith("vigil-platform.monitor")], overlay


# ---- tenant credentials ------------------------------------------------------------------------

def mounted_files(deploy) -> dict[str, tuple[str, str]]:
    """Absolute file path -> (Secret name, key) for every projected/secret file the pod mounts."""
    pod = deploy["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    out = {}
    for mount in container(deploy).get("volumeMounts", []):
        volume = volumes[mount["name"]]
        sources = [s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s]
        if "secret" in volume:
            sources.append({"name": volume["secret"]["secretName"], "items": volume["secret"].get("items", [])})
        for source in sources:
            for item in source.get("items", []):
                out[f"{mount['mountPath']}/{item['path']}"] = (source["name"], item["key"])
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_tenant_credential_reaches_only_its_service(overlay, rendered, tmp_path):
    docs = rendered[overlay]
    path = tmp_path / "tenants.toml"
    path.write_text(one(docs, "ConfigMap", "vigil-tenants")["data"]["tenants.toml"], encoding="utf-8")
    registry = Registry.load(path)
    deploys = deployments(docs)
    files = {name: mounted_files(d) for name, d in deploys.items()}
    for tenant in registry:
        wanted = {f"{prefix}_private_key_file": service for prefix, service in SMART_CLIENTS.items()}
        wanted["cds_jwks_file"] = "cdshooks"
        for setting, service in wanted.items():
            client = tenant.setting(setting.replace("_private_key_file", "_client_id").replace(
                "_jwks_file", "_client_iss"))
            file = tenant.setting(setting)
            if overlay == "prod":
                # VIGIL_ENV=prod refuses an unauthenticated EHR call: every service has its client.
                assert client and file, (tenant.id, setting)
            if not file:
                continue
            assert file in files[service], (overlay, tenant.id, setting, service)
            secret = files[service][file]
            holders = {n for n, f in files.items() if secret in f.values()}
            assert holders == {service}, (tenant.id, secret, holders)
        if overlay == "prod":
            effective = (tenant.setting("fhir_scope") or TOOLS_DEFAULT_SCOPE).split()
            for needed in ("system/Appointment.cu", "system/Slot.u", "system/Communication.c", "system/Task.c"):
                assert needed in effective, \
                    f"tools books and cancels appointments and writes Communications and Tasks: needs {needed}"
            # The hl7 stage reads Patients by identifier; without copies into the EHR it writes nothing.
            hl7 = (tenant.setting("hl7_scope") or INGEST_DEFAULT_SCOPE).split()
            assert "system/Patient.rs" in hl7, hl7
            if not tenant.setting("hl7_copy_to_ehr"):
                assert all(s.rpartition(".")[2] in ("r", "s", "rs") for s in hl7), f"hl7 needs read scopes only: {hl7}"
            assert tenant.ehr_base_url.startswith("https://")
        else:
            assert tenant.ehr_base_url == "", "dev tenants use the in-cluster sandbox (VIGIL_EHR_URL)"
