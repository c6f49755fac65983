"""The model_download task, from its parameters to its result: the one call the Ansible
module makes (library/model_download.py only declares the options and reports).

    failed, result = run_task(params, check_mode)

Order: read the declared folders (owner, group, mode) -> check the catalog (nothing asked or
written when it is bad) -> mark the progress file (kept fresh while planning) -> plan ->
refuse declared mismatches -> in check mode, hash what only hashing can judge -> check the
disk -> report the plan (check mode; with ``compat`` and every file in place, also the
model_compat answer) or execute it. Any failure after the marker marks the
progress file finished, so a watcher stops waiting.
Standard library only, Python 3.8+ (it runs on the VMs).
"""

from __future__ import annotations

from typing import Any

from . import download_progress
from .catalog import CatalogError, normalize_catalog
from .download_folders import check_folders
from .download_item import PlanItem
from .http_download import (
    DownloadError,
    Settings,
    check_declared_families,
    check_disk,
    describe_changes,
    execute,
    load_manifest,
    make_plan,
    settle_by_hashing,
)
from .model_cache import Cache
from .model_compat import check_catalog_and_tree


def totals(files: list[dict[str, Any]], to_fetch: int) -> dict[str, int]:
    counts: dict[str, int] = {"files": len(files), "bytes_to_fetch": to_fetch}
    for item in files:
        counts[item["action"]] = counts.get(item["action"], 0) + 1
    counts["bytes"] = sum(item.get("size") or 0 for item in files)
    return counts


def cache_from(params: dict[str, Any]) -> Cache | None:
    """The fleet model cache the reader pulls from first, or None (the default: off)."""
    if not params.get("cache_sas_url"):
        return None
    try:
        return Cache(params["cache_sas_url"], params.get("azcopy") or "azcopy")
    except ValueError as error:
        raise DownloadError(str(error)) from None


def settings_from(params: dict[str, Any]) -> Settings:
    return Settings(
        hf_endpoint=params["huggingface_endpoint"],
        civitai_endpoint=params["civitai_endpoint"],
        hf_token=params["huggingface_token"],
        civitai_key=params["civitai_api_key"],
        connections=params["connections_per_file"],
        parallel_files=params["parallel_files"],
        verify=params["verify"],
        progress_file=params["progress_file"],
        retries=params["retries"],
        ca_file=params["ca_file"],
        cache=cache_from(params),
    )


def _failure(message: str, problems: list[str]) -> tuple[bool, dict[str, Any]]:
    return True, {"msg": message, "errors": problems, "files": [], "bytes_to_fetch": 0}


def run_task(params: dict[str, Any], check_mode: bool) -> tuple[bool, dict[str, Any]]:
    """(failed, result) of one model_download task; ``result`` is what the module returns."""
    try:
        entries = normalize_catalog(params["catalog"], params["bundles"])
    except CatalogError as error:
        return _failure(
            f"The model catalog has {len(error.problems)} problem(s), nothing downloaded: "
            + " | ".join(error.problems),
            error.problems,
        )
    progress_file = params["progress_file"]
    # Before asking upstream (seconds for a long catalog) a watcher polling the progress file
    # must not take an earlier run's "finished" for this one; a run in flight keeps its file.
    # The marker stays fresh while the run plans: a file that stops changing means a dead job.
    # The folders first: their state is read whatever the plan finds (a fresh host has none).
    folders, differ = check_folders(params.get("folders") or [])
    heartbeat = None
    if progress_file and not check_mode and not download_progress.in_flight(progress_file):
        heartbeat = download_progress.Heartbeat(progress_file).start()
    try:
        failed, result = _plan_and_run(entries, params, check_mode, heartbeat)
    except DownloadError as error:
        failed, result = _failure(str(error), [str(error)])
    except Exception as error:  # a bug: still a failed task (the module masks the secrets)
        message = f"unexpected {type(error).__name__} while handling the models: {error}"
        failed, result = _failure(message, [message])
    result.update(folders=folders, folders_differ=differ)
    if heartbeat is not None:
        heartbeat.stop()
        # Failed before the download wrote its own final progress (the result of a finished
        # download carries totals): mark the run over, so the watcher stops waiting.
        if failed and "totals" not in result:
            download_progress.mark(progress_file, finished=True, errors=len(result["errors"]))
    return failed, result


def _in_place(plan: list[PlanItem], hashed: bool) -> bool:
    """Every file is as the real run will leave it: nothing to download or repair, and
    nothing left to hash (a ``verify`` the real run's download still reads) unless this
    plan hashed it already."""
    actions = {item.action for item in plan}
    return not actions & {"download", "repair"} and (hashed or "verify" not in actions)


def _plan_and_run(
    entries: list[dict[str, Any]],
    params: dict[str, Any],
    check_mode: bool,
    heartbeat: download_progress.Heartbeat | None,
) -> tuple[bool, dict[str, Any]]:
    forge_dir, settings = params["forge_dir"], settings_from(params)
    plan = make_plan(entries, forge_dir, settings)
    mismatches = check_declared_families(plan)
    if mismatches:
        return _failure(
            f"{len(mismatches)} catalog mismatch(es), nothing downloaded: "
            + " | ".join(mismatches),
            mismatches,
        )
    if check_mode and params["hash_changed"]:
        settle_by_hashing(plan, forge_dir)  # read-only; the real run hashes alike
    to_fetch = sum(item.bytes_to_fetch for item in plan)
    check_disk(plan, forge_dir)  # a read-only probe: check mode fails alike
    if check_mode:
        files = [item.public() for item in plan]
        changes = describe_changes(plan)
        declared = [item.declaration(forge_dir) for item in plan]
        result = {
            "changed": bool(changes),
            "msg": "; ".join(changes) or "every model is in place",
            "changes": changes,
            "files": files,
            "declared": declared,
            "bytes_to_fetch": to_fetch,
            "totals": totals(files, to_fetch),
        }
        if params["compat"] and _in_place(plan, hashed=params["hash_changed"]):
            result["compat"] = check_catalog_and_tree(
                declared, forge_dir, params["allow_pickle"], load_manifest(forge_dir)
            )
        return False, result
    if heartbeat is not None:
        heartbeat.stop()  # the download's own writer takes over at once
    outcome = execute(plan, forge_dir, settings)
    result = {
        "changed": outcome["changed"],
        "files": outcome["files"],
        "declared": [item.declaration(forge_dir) for item in plan],
        "bytes_to_fetch": to_fetch,
        "totals": totals(outcome["files"], to_fetch),
    }
    if outcome["errors"]:
        result["msg"] = f"{len(outcome['errors'])} model download(s) failed: " + " | ".join(
            outcome["errors"]
        )
        result["errors"] = outcome["errors"]
        return True, result
    return False, result
