"""The cron entry and the Kubernetes manifests (kustomize overlays, rendered by the real
`kubectl kustomize`): schema-valid, and safe as deployed."""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.ops.tools import need_binary

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "cron" / "k8s" / "kustomize"
OVERLAYS = ["nightly", "review", "sharded", "sweep", "sweep-sharded"]
# The files kustomize reads that are whole manifests (not kustomizations, not patches).
SOURCES = sorted(
    p
    for p in KUSTOMIZE.rglob("*.yaml")
    if p.name != "kustomization.yaml" and not p.name.endswith(".patch.yaml")
)
# The oldest Kubernetes release we claim to support, and the newest the validator knows.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
RUN_GRACE_PERIOD_DEFAULT = 20
# Fields kustomize v2.0.3 (in Debian's kubectl 1.20, which .ci/run installs when kubectl
# is missing) reads; v5 still reads them all. `resources` lists files there, never
# directories (those go in `bases`).
KUSTOMIZE_V2_FIELDS = {
    "resources",
    "bases",
    "patchesJson6902",
    "patchesStrategicMerge",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "commonLabels",
    "commonAnnotations",
    "images",
    "configMapGenerator",
    "secretGenerator",
}

Doc = dict[str, Any]


def documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@functools.cache
def _kustomize(overlay: str) -> tuple[int, str, str]:
    kubectl = need_binary("kubectl", "kubernetes-client")
    done = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout, done.stderr


def rendered(overlay: str) -> list[Doc]:
    """`kubectl kustomize` of one overlay: what `kubectl apply -k` would create."""
    returncode, stdout, stderr = _kustomize(overlay)
    assert returncode == 0, stderr
    docs = [doc for doc in yaml.safe_load_all(stdout) if doc is not None]
    assert docs, f"{overlay} renders nothing"
    return docs


def pod_spec(doc: Doc) -> Doc:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def pod_labels(doc: Doc) -> dict[str, str]:
    spec = job_spec(doc)
    return spec["template"]["metadata"]["labels"]  # type: ignore[no-any-return]


def job_spec(doc: Doc) -> Doc:
    return doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]  # type: ignore[no-any-return]


def workloads(overlay: str) -> list[Doc]:
    found = [d for d in rendered(overlay) if d["kind"] in {"CronJob", "Job"}]
    assert found, f"{overlay} has no workload"
    return found


def env_of(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def mount_source(spec: Doc, container: Doc, path: str) -> Doc:
    """The volume mounted at the directory holding `path` (or at `path` itself)."""
    mounts = sorted(container["volumeMounts"], key=lambda m: -len(m["mountPath"]))
    for mount in mounts:
        if path == mount["mountPath"] or path.startswith(mount["mountPath"].rstrip("/") + "/"):
            [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
            return {**volume, "readOnly": mount.get("readOnly", False)}
    raise AssertionError(f"nothing is mounted at {path}")


def audit_claim(doc: Doc) -> str:
    spec = pod_spec(doc)
    [container] = spec["containers"]
    audit_log = env_of(container)["RETENTION_AUDIT_LOG"]["value"]
    return mount_source(spec, container, audit_log)["persistentVolumeClaim"]["claimName"]  # type: ignore[no-any-return]


def claims(overlay: str) -> dict[str, Doc]:
    return {
        d["metadata"]["name"]: d for d in rendered(overlay) if d["kind"] == "PersistentVolumeClaim"
    }


def test_every_overlay_is_checked() -> None:
    assert sorted(p.name for p in (KUSTOMIZE / "overlays").iterdir()) == OVERLAYS
    assert (KUSTOMIZE / "base" / "kustomization.yaml").is_file()


@pytest.mark.parametrize(
    "path", sorted(KUSTOMIZE.rglob("kustomization.yaml")), ids=lambda p: p.parent.name
)
def test_kustomizations_use_only_what_kustomize_v2_reads(path: Path) -> None:
    kustomization = yaml.safe_load(path.read_text())
    assert set(kustomization) <= KUSTOMIZE_V2_FIELDS, set(kustomization) - KUSTOMIZE_V2_FIELDS
    for entry in kustomization.get("resources", []):
        assert (path.parent / entry).is_file(), f"{entry}: v2 `resources` takes files only"
    for entry in kustomization.get("bases", []):
        assert (path.parent / entry / "kustomization.yaml").is_file(), entry
    for patch in kustomization.get("patchesJson6902", []):
        assert (path.parent / patch["path"]).is_file(), patch["path"]
        assert {"group", "version", "kind", "name"} <= set(patch["target"])


def test_the_overlays_deploy_what_they_say() -> None:
    kinds = {o: sorted(d["kind"] for d in rendered(o)) for o in OVERLAYS}
    assert kinds == {
        "nightly": ["CronJob", "PersistentVolumeClaim"],
        "review": ["CronJob", "CronJob", "PersistentVolumeClaim"],
        "sharded": ["CronJob", "PersistentVolumeClaim"],
        "sweep": ["ConfigMap", "Job"],
        "sweep-sharded": ["ConfigMap", "Job"],
    }


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_document_matches_the_kubernetes_schema(overlay: str, version: str) -> None:
    for doc in rendered(overlay):
        # strict: unknown (misspelt) fields are errors too.
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_source_manifest_matches_the_kubernetes_schema(path: Path, version: str) -> None:
    # Whole manifests are valid before kustomize too (readable and usable with kubectl -f).
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("overlay", ["nightly", "sharded"])
def test_nightly_cronjob_never_overlaps_and_is_bounded(overlay: str) -> None:
    [cronjob] = workloads(overlay)
    assert cronjob["kind"] == "CronJob"
    # One name for both overlays: applying one replaces the other, never both at once.
    assert cronjob["metadata"]["name"] == "retention-nightly"
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] > 0
    job = spec["jobTemplate"]["spec"]
    assert job.get("backoffLimit", job.get("backoffLimitPerIndex", -1)) >= 0
    assert job["activeDeadlineSeconds"] > 0
    [container] = pod_spec(cronjob)["containers"]
    assert "--execute" in container["args"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down(overlay: str) -> None:
    for doc in workloads(overlay):
        spec = pod_spec(doc)
        assert spec["restartPolicy"] == "Never"
        assert spec["automountServiceAccountToken"] is False
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True
        assert pod_security["runAsUser"] != 0
        assert pod_security["seccompProfile"]["type"] == "RuntimeDefault"
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}
            assert ":latest" not in container["image"]
            # A read-only root still needs a scratch /tmp.
            assert "emptyDir" in mount_source(spec, container, "/tmp")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_outlasts_the_runs_own(overlay: str) -> None:
    for doc in workloads(overlay):
        spec = pod_spec(doc)
        [container] = spec["containers"]
        grace = int(
            env_of(container)
            .get("RETENTION_GRACE_PERIOD", {})
            .get("value", RUN_GRACE_PERIOD_DEFAULT)
        )
        assert spec["terminationGracePeriodSeconds"] >= grace + 20


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_inputs_and_audit_log_come_from_the_right_volumes(overlay: str) -> None:
    for doc in workloads(overlay):
        spec = pod_spec(doc)
        [container] = spec["containers"]
        args: list[str] = container["args"]
        text = yaml.safe_dump(doc)
        assert "sk_car_" not in text and "CARTESIA_API_KEY" not in text
        key_file = args[args.index("--api-key-file") + 1]
        key_volume = mount_source(spec, container, key_file)
        assert "secret" in key_volume and key_volume["readOnly"]
        policies = mount_source(spec, container, args[args.index("--policies") + 1])
        assert "configMap" in policies and policies["readOnly"]
        audit_claim(doc)
        # Retries of a job whose input is wrong would only repeat the error.
        rules = job_spec(doc)["podFailurePolicy"]["rules"]
        fail_fast = {
            c for r in rules if r["action"] == "FailJob" for c in r["onExitCodes"]["values"]
        }
        assert {2, 4, 6} <= fail_fast and 1 not in fail_fast and 0 not in fail_fast


def test_every_claim_is_created_by_the_overlay_that_owns_it() -> None:
    nightly, sharded = claims("nightly"), claims("sharded")
    [workload] = workloads("nightly")
    assert nightly[audit_claim(workload)]["spec"]["accessModes"] == ["ReadWriteOnce"]
    [workload] = workloads("sharded")
    assert sharded[audit_claim(workload)]["spec"]["accessModes"] == ["ReadWriteMany"]
    # The sweep appends to the nightly run's log: one chain, one record.
    [nightly_job] = workloads("nightly")
    [sweep] = workloads("sweep")
    assert not claims("sweep") and audit_claim(sweep) == audit_claim(nightly_job)
    logs = [
        env_of(pod_spec(d)["containers"][0])["RETENTION_AUDIT_LOG"] for d in (sweep, nightly_job)
    ]
    assert logs[0] == logs[1]
    # Beside sharded runs, the sweep mounts their RWX claim, with a log of its own: each
    # shard's log is locked by its shard for the whole night.
    [shard_job] = workloads("sharded")
    [sweep] = workloads("sweep-sharded")
    assert not claims("sweep-sharded") and audit_claim(sweep) == audit_claim(shard_job)
    sweep_log = env_of(pod_spec(sweep)["containers"][0])["RETENTION_AUDIT_LOG"]["value"]
    shard_log = env_of(pod_spec(shard_job)["containers"][0])["RETENTION_AUDIT_LOG"]["value"]
    assert sweep_log.startswith("/var/lib/retention/") and sweep_log != shard_log
    assert "$(" not in sweep_log


def test_pods_sharing_the_read_write_once_claim_share_a_node() -> None:
    """No Multi-Attach wait: every pod mounting the RWO claim must join a running one's node."""
    pods = [*workloads("nightly"), *workloads("sweep")]
    labels = []
    for doc in pods:
        affinity = pod_spec(doc)["affinity"]
        [term] = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        selector = term["labelSelector"]
        assert set(selector) == {"matchLabels"}
        # The pod matches its own term: the first one (none running) schedules anywhere.
        assert selector["matchLabels"].items() <= pod_labels(doc).items()
        labels.append(selector["matchLabels"])
    assert labels[0] == labels[1]
    assert {audit_claim(doc) for doc in pods} == {"retention-audit"}
    # The pods on the ReadWriteMany claim spread freely.
    for overlay in ["sharded", "sweep-sharded"]:
        [doc] = workloads(overlay)
        assert "affinity" not in pod_spec(doc)
        assert not labels[0].items() <= pod_labels(doc).items()


@pytest.mark.parametrize("overlay", ["sweep", "sweep-sharded"])
def test_erasure_sweep_deletes_one_customer_and_is_capped(overlay: str) -> None:
    docs = rendered(overlay)
    [job] = [d for d in docs if d["kind"] == "Job"]
    spec = pod_spec(job)
    [container] = spec["containers"]
    args = container["args"]
    assert "--execute" in args and int(args[args.index("--max-deletes") + 1]) > 0
    source = mount_source(spec, container, args[args.index("--policies") + 1])
    [config_map] = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == source["configMap"]["name"]
    ]
    [policy_text] = config_map["data"].values()
    policies = yaml.safe_load(policy_text)["policies"]
    erasure = [p for p in policies if "delete_after" in p]
    assert len(erasure) == 1
    assert erasure[0]["delete_after"] == "0d"
    assert set(erasure[0]["match"]) == {"metadata"}
    assert set(erasure[0]["match"]["metadata"]) == {"customer_id"}
    # Holds stay in force during a sweep.
    assert any(p.get("retain_for") == "forever" for p in policies)


def test_sharded_cronjob_runs_an_indexed_job_whose_shards_match_its_completions() -> None:
    [cronjob] = workloads("sharded")
    assert cronjob["kind"] == "CronJob"
    spec = job_spec(cronjob)
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] > 1
    # Retry a failed shard on its own; a Job-wide backoffLimit would cap them all together.
    assert spec["backoffLimitPerIndex"] >= 0 and "backoffLimit" not in spec
    [container] = pod_spec(cronjob)["containers"]
    args = container["args"]
    shard = re.fullmatch(r"\$\((\w+)\)/(\d+)", args[args.index("--shard") + 1])
    assert shard is not None
    index_var, total = shard.group(1), int(shard.group(2))
    assert total == spec["completions"]
    env = container["env"]
    names = [e["name"] for e in env]
    source = env[names.index(index_var)]["valueFrom"]["fieldRef"]["fieldPath"]
    assert "batch.kubernetes.io/job-completion-index" in source
    # Each shard its own audit log (own chain, own lock), defined after the index it uses.
    audit = env[names.index("RETENTION_AUDIT_LOG")]["value"]
    assert f"$({index_var})" in audit
    assert names.index(index_var) < names.index("RETENTION_AUDIT_LOG")
    # And its own report: no file on the shared volume is written by two shards.
    shared = [a for a in args if a.startswith("/var/lib/retention/")]
    assert shared and all(f"$({index_var})" in a for a in shared)


CRONTAB = ROOT / "cron" / "retention.cron"


def crontab_jobs() -> list[str]:
    lines = [line for line in CRONTAB.read_text().splitlines() if line and not line.startswith("#")]
    return [line for line in lines if not re.match(r"^[A-Z_]+=", line)]


def test_crontab_entry_is_locked_logged_and_alerting() -> None:
    [entry] = crontab_jobs()
    fields = entry.split(None, 6)
    minute, hour, dom, month, dow, user, command = fields
    assert all(re.fullmatch(r"[\d*/,-]+", f) for f in (minute, hour, dom, month, dow))
    assert user == "retention"
    assert command.startswith("flock -n ")
    assert "retention run --execute" in command
    assert "sk_car_" not in CRONTAB.read_text()
    # cron turns a bare % into a newline: every % in the command must be escaped.
    assert re.search(r"(?<!\\)%", command) is None
    assert re.search(r">> \S*\$\(date [^)]*\)\S*\.log 2>&1", command)


def test_crontab_command_is_valid_shell() -> None:
    [entry] = crontab_jobs()
    command = entry.split(None, 6)[6].replace("\\%", "%")
    checked = subprocess.run(["sh", "-n", "-c", command], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_env_file_example_holds_no_key() -> None:
    text = (ROOT / "cron" / "retention.env.example").read_text()
    assert re.search(r"^CARTESIA_API_KEY=$", text, re.MULTILINE)
    assert "sk_car_" not in text


def _run_command_interface(command: str = "run") -> tuple[set[str], set[str]]:
    """The flags and environment variables `retention COMMAND` accepts."""
    from retention.cli import cli

    run = cli.commands[command]
    flags = {opt for param in run.params for opt in getattr(param, "opts", [])}
    envvars: set[str] = set()
    for param in run.params:
        value = getattr(param, "envvar", None)
        envvars.update([value] if isinstance(value, str) else value or [])
    return flags, envvars


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_use_only_real_flags_and_variables(overlay: str) -> None:
    for doc in workloads(overlay):
        [container] = pod_spec(doc)["containers"]
        assert container["args"][0] in {"run", "plan", "apply"}
        flags, envvars = _run_command_interface(container["args"][0])
        used = {arg for arg in container["args"] if arg.startswith("--")}
        assert used <= flags, used - flags
        ours = {n for n in env_of(container) if n.startswith(("RETENTION_", "CARTESIA_"))}
        # A variable the run does not read would be silently ignored.
        assert ours <= envvars, ours - envvars


def test_crontab_and_env_file_use_only_real_flags_and_variables() -> None:
    flags, envvars = _run_command_interface()
    [entry] = crontab_jobs()
    run_args = entry.split("retention run", 1)[1].split("'", 1)[0]
    used = set(re.findall(r"(--[a-z-]+)", run_args))
    assert used <= flags, used - flags
    example = (ROOT / "cron" / "retention.env.example").read_text()
    named = set(re.findall(r"^#? ?(RETENTION_\w+)=", example, re.M))
    assert named and named <= envvars, named - envvars


def test_erasure_policies_load_with_the_projects_loader() -> None:
    from retention.policy.load import parse_policies
    from retention.policy.model import Kind

    [config_map] = [
        d
        for d in documents(KUSTOMIZE / "overlays" / "sweep" / "sweep-job.yaml")
        if d["kind"] == "ConfigMap"
    ]
    [(name, text)] = config_map["data"].items()
    loaded = parse_policies([(name, text)])
    deletion = [p for p in loaded.policies if p.kind is Kind.DELETE]
    assert [p.duration_text for p in deletion] == ["0d"]
    assert any(p.kind is Kind.RETAIN and p.forever for p in loaded.policies)


def test_the_review_overlay_plans_nightly_and_applies_only_a_reviewers_pin() -> None:
    jobs = {d["metadata"]["name"]: d for d in workloads("review")}
    plan, apply = jobs["retention-nightly"], jobs["retention-apply"]
    [planner] = pod_spec(plan)["containers"]
    [applier] = pod_spec(apply)["containers"]
    # The plan step deletes nothing; the apply step deletes only the reviewed plan.
    assert planner["args"][0] == "plan" and "--execute" not in planner["args"]
    assert applier["args"][0] == "apply" and "--execute" in applier["args"]
    folders = {c["args"][c["args"].index("--review-dir") + 1] for c in (planner, applier)}
    assert len(folders) == 1
    # Both on the audit log's volume (one claim), on one node (ReadWriteOnce).
    assert audit_claim(plan) == audit_claim(apply) == "retention-audit"
    assert folders.pop().startswith("/var/lib/retention/")
    for job in (plan, apply):
        [term] = pod_spec(job)["affinity"]["podAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        assert term["labelSelector"]["matchLabels"].items() <= pod_labels(job).items()
    # The pin comes from a ConfigMap only a reviewer writes; without it, apply exits 2.
    pin = env_of(applier)["RETENTION_EXPECT_SHA256"]["valueFrom"]["configMapKeyRef"]
    assert pin == {"name": "retention-approval", "key": "sha256", "optional": True}
    assert 2 in {
        code
        for rule in job_spec(apply)["podFailurePolicy"]["rules"]
        if rule["action"] == "FailJob"
        for code in rule["onExitCodes"]["values"]
    }
    # Apply runs before tonight's plan: the newest plan is last night's, reviewed by day.
    plan_hour = int(plan["spec"]["schedule"].split()[1])
    apply_hour = int(apply["spec"]["schedule"].split()[1])
    assert apply_hour < plan_hour
    assert plan["spec"]["concurrencyPolicy"] == apply["spec"]["concurrencyPolicy"] == "Forbid"
