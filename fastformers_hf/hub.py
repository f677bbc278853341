"""Pushing compressed models to the Hugging Face Hub and reading their record back by repo id.

One push is one commit (``HfApi.create_commit``): PyTorch weights, config, tokenizer, a model card rendered from
what was recorded (``hub_cards``), the ONNX variants under ``onnx/`` and any extra folder (e.g. a calibrated
cascade). Before anything goes over the network the directory is checked: it loads, its recorded shape matches
its weights, and its card has numbers (a warning says which command measures them if not).

A pruned shape that transformers 5 cannot build from ``config.json`` alone (``hub_code.needs_remote_code``) goes
with ``modeling_fastformers.py`` and an ``auto_map`` entry (``hub_code.add_remote_code``), added to the upload when
the folder lacks them (the folder itself is left as it is), so the repo loads with ``trust_remote_code=True`` in
transformers 4.x and 5.x.

Repo layout::

    config.json, model.safetensors, tokenizer files, README.md   AutoModelForSequenceClassification.from_pretrained(repo)
    modeling_fastformers.py   pruned shapes only:  ...from_pretrained(repo, trust_remote_code=True)
    onnx/                     one ONNX variant:  ORTModelForSequenceClassification.from_pretrained(repo, subfolder="onnx")
    onnx/<name>/              several variants:  ...from_pretrained(repo, subfolder="onnx/<name>")
    <folder>/                 extra folders, as they are on disk (extra_dirs={"cascade": path})
"""
from __future__ import annotations

import fnmatch
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

from .errors import FastFormersError
from .hub_checks import shape_from_weights, stage_remote_code, verify_model_dir  # noqa: F401  (public here too)
from .shape_record import compression_record

ONNX_FOLDER = "onnx"
# Trainer leftovers that are not part of a model (checkpoint-*/ and runs/ are skipped when the tree is read);
# README.md is replaced by the rendered card.
IGNORED_FILES = ("optimizer.pt", "scheduler.pt", "rng_state*.pth", "training_args.bin", "*.tmp", "README.md")


def _endpoint() -> str:
    """The Hub to talk to: HF_ENDPOINT as huggingface_hub read it when imported (it parses its own URLs with it)."""
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


# -- what to upload ---------------------------------------------------------------------------------------------


def _folders(model_dir: Path, onnx_dir, extra_dirs) -> dict[str, Path]:
    """``{path in repo: local dir}`` for the ONNX variants and extra folders, checked before anything is sent."""
    folders: dict[str, Path] = {}
    if onnx_dir is not None:
        if (model_dir / ONNX_FOLDER).exists():
            raise FastFormersError(
                f"{model_dir} already has an {ONNX_FOLDER}/ folder and onnx_dir was given too; pass one of them.")
        named = onnx_dir if isinstance(onnx_dir, Mapping) else {"": onnx_dir}
        for name, path in named.items():
            folders[f"{ONNX_FOLDER}/{name}" if name else ONNX_FOLDER] = Path(path)
    for name, path in (extra_dirs or {}).items():
        name = str(name).strip("/")
        if not name or name.startswith((".", "/")) or ".." in name.split("/") or name.split("/")[0] == ONNX_FOLDER:
            raise FastFormersError(
                f"extra_dirs name {name!r} is not a plain folder name (and {ONNX_FOLDER}/ is for onnx_dir); "
                "use e.g. extra_dirs={'cascade': path}.")
        folders[name] = Path(path)
    for repo_path, path in folders.items():
        if not path.is_dir():
            raise FastFormersError(f"{path} (for {repo_path}/ in the repo) is not a directory; pass an existing folder.")
        if repo_path.startswith(ONNX_FOLDER) and not any(path.rglob("*.onnx")):
            raise FastFormersError(f"{path} holds no .onnx file; pass a directory written by export_onnx or quantize_onnx.")
    return folders


# What a Hub access token looks like ("hf_" + 34 letters and digits); a command line recorded with a measurement
# could hold one, and pushing it would publish it.
_TOKEN_PATTERN = re.compile(rb"hf_[A-Za-z0-9]{30,}")


def _check_no_tokens(tree: Mapping[str, Path]) -> None:
    for repo_path, local in tree.items():
        if local.suffix in (".json", ".md", ".txt", ".yaml", ".yml", ".cfg") and local.stat().st_size < 10_000_000:
            if _TOKEN_PATTERN.search(local.read_bytes()):
                raise FastFormersError(
                    f"{local} ({repo_path} in the repo) holds what looks like a Hub access token (hf_...); remove it "
                    "(e.g. from a recorded command line) before pushing: it would be published.")


def _operations(tree: Mapping[str, Path], card: str):
    from huggingface_hub import CommitOperationAdd

    from hub_cards import README

    ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(local)) for p, local in sorted(tree.items())
           if not any(fnmatch.fnmatch(p.rsplit("/", 1)[-1], pat) for pat in IGNORED_FILES)]
    ops.append(CommitOperationAdd(path_in_repo=README, path_or_fileobj=card.encode("utf-8")))
    return ops


# -- errors ------------------------------------------------------------------------------------------------------


def _push_error(exc: Exception, stage: str, repo_id: str, revision: str, ops, token, model_dir: Path) -> FastFormersError:
    from huggingface_hub import get_token

    endpoint = _endpoint()
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status == 401:
        if token is None and get_token() is None:
            why = "no token was given and none is saved"
        else:
            why = "the Hub rejected the token (401 Unauthorized)"
        return FastFormersError(
            f"could not push to {repo_id} at {endpoint} while {stage}: {why}. Pass token=... with write access, set "
            "HF_TOKEN, or log in with `hf auth login`. Nothing was committed.")
    if status == 403:
        return FastFormersError(
            f"could not push to {repo_id} at {endpoint} while {stage}: the token may not write to this repo (403 "
            "Forbidden); use a token with write access to its namespace. Nothing was committed.")
    if type(exc).__name__ == "OfflineModeIsEnabled":
        return FastFormersError(
            f"could not push to {repo_id}: HF_HUB_OFFLINE is set, so huggingface_hub makes no requests; unset it "
            "(before Python starts) to push. Nothing was uploaded.")
    lfs = [op for op in ops if getattr(op, "_upload_mode", None) == "lfs"]
    # huggingface_hub marks each uploaded LFS file on its operation (_is_uploaded); there is no public accessor.
    sent = [op.path_in_repo for op in lfs if getattr(op, "_is_uploaded", False)]
    rest = [op.path_in_repo for op in ops if op.path_in_repo not in sent]
    names = f"{', '.join(rest[:8])}{', ...' if len(rest) > 8 else ''}"
    if stage == "committing" and status is None:  # no HTTP answer at all: the Hub may have done the commit
        repo_state = (f"The commit request got no complete answer, so {repo_id}@{revision} may or may not have the "
                      "new commit: look at its history (HfApi().list_repo_commits) before relying on it.")
        others = f"The other {len(rest)} file(s) ({names}) went only inside that commit request."
    else:
        repo_state = f"No commit was made: {repo_id}@{revision} is as it was."
        others = f"Not committed: {len(rest)} file(s) ({names})." if stage == "committing" else \
            f"Not uploaded: {len(rest)} file(s) ({names})."
    uploaded = (f"Uploaded: {len(sent)} of {len(lfs)} large files reached the Hub's LFS storage ({', '.join(sent)}); "
                "they belong to no commit and a new push skips them." if sent else "No file content had been uploaded.")
    return FastFormersError(
        f"pushing {model_dir} to {repo_id} at {endpoint} failed while {stage}: {type(exc).__name__}: "
        f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. {repo_state} {uploaded} {others} {model_dir} was "
        "not changed. Check the network and HF_ENDPOINT, then run the same push again.")


# -- the public functions ---------------------------------------------------------------------------------------


def push_to_hub(
    model_dir: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    revision: str | None = None,
    *,
    onnx_dir: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None,
    extra_dirs: Mapping[str, str | os.PathLike] | None = None,
    commit_message: str | None = None,
    card_fields: Mapping[str, Any] | None = None,
    verify: bool = True,
):
    """Push a compressed model directory to ``repo_id`` in one commit and return its URL (a ``CommitInfo``,
    which is the commit URL as a string, with ``.oid`` and ``.repo_url``).

    Args:
        model_dir: a ``save_pretrained`` directory (weights, config, tokenizer); any ``onnx/`` folder in it goes too.
        repo_id: ``"namespace/name"``; the repo is created if missing (``private`` applies to a new repo, and a
            push meant to be private refuses to go to an existing public repo).
        token: a write token (default: HF_TOKEN or the saved login). ``HF_ENDPOINT`` picks the Hub.
        revision: branch to commit to; created from ``main`` if missing.
        onnx_dir: one ONNX variant directory (uploaded as ``onnx/``) or ``{name: dir}`` (``onnx/<name>/``).
        extra_dirs: more folders, ``{path in repo: local dir}``, uploaded as they are (e.g. a calibrated cascade).
        card_fields: user fields of the card (``license``, ``language``, ``description``, ...; see
            ``hub_cards.FastFormersCardData``).
        verify: check that the directory loads and its recorded shape matches its weights before pushing.

    Nothing in ``model_dir`` is changed; the card goes straight into the commit. A pruned shape that transformers 5
    cannot build from ``config.json`` alone (``hub_code.needs_remote_code``) is pushed with ``modeling_fastformers.py``
    and its ``auto_map`` entry, added to the commit (and logged) when ``model_dir`` lacks them, and is checked to
    load with ``from_pretrained(..., trust_remote_code=True)``.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FastFormersError(f"{model_dir} is not a directory; pass the folder the model was saved to.")
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(repo_id)
    except ValueError as e:
        raise FastFormersError(f"repo_id {repo_id!r} is not a valid Hub repo id ({e}); use 'namespace/name'.") from None
    folders = _folders(model_dir, onnx_dir, extra_dirs)
    with tempfile.TemporaryDirectory(prefix="fastformers-push-") as staging:
        # modeling_fastformers.py and its auto_map, when the shape needs them and the folder lacks them
        staged = stage_remote_code(model_dir, Path(staging))
        return _push(model_dir, repo_id, folders, staged, private=private, token=token, revision=revision,
                     commit_message=commit_message, card_fields=card_fields, verify=verify)


def _push(model_dir: Path, repo_id: str, folders, staged: Path | None, *, private, token, revision, commit_message,
          card_fields, verify):
    """:func:`push_to_hub` once the arguments are checked; ``staged``: ``model_dir`` plus the remote code it lacks."""
    from hub_cards import CardDataError, FastFormersCardData, render_card

    from .hub_code import MODELING_FILE
    from .utils.io import read_json

    record = verify_model_dir(model_dir, load_dir=staged or model_dir) if verify else compression_record(model_dir)
    fields = {"model_id": repo_id, **(card_fields or {})}
    config = read_json(staged / "config.json") if staged else None  # the config that goes up, auto_map and all
    try:
        data = FastFormersCardData.from_model_dir(model_dir, folders=folders, config=config, **fields)
        card = render_card(model_dir, folders=folders, config=config, **fields)
    except CardDataError as e:
        raise FastFormersError(str(e)) from None
    if not data.measurements:
        from hub_cards import MEASURE_HINT

        warnings.warn(f"{model_dir} has no recorded measurements, so its model card states no accuracy or speed; "
                      f"{MEASURE_HINT}.", UserWarning, stacklevel=3)
    from hub_cards import repo_tree

    tree = repo_tree(model_dir, folders)
    if staged:
        tree.update({name: staged / name for name in ("config.json", MODELING_FILE)})
    _check_no_tokens(tree)
    ops = _operations(tree, card)
    steps = [s.get("step") for s in record.get("steps", [])]
    message = commit_message or f"Upload {record.get('model_type') or 'model'} made with fastformers-hf" + (
        f" ({', '.join(map(str, steps))})" if steps else "")
    return _upload(model_dir, repo_id, ops, private=private, token=token, revision=revision, message=message)


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a dropped connection raises in huggingface_hub's HTTP client: requests' errors (0.x) or httpx's (1.x; httpx2 in 2.x)."""
    errors: list[type[BaseException]] = [OSError]
    for module, name in (("requests", "RequestException"), ("httpx", "HTTPError"), ("httpx2", "HTTPError")):
        try:
            errors.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _upload(model_dir: Path, repo_id: str, ops, *, private: bool, token, revision, message: str):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=_endpoint(), token=token)
    branch = revision or "main"
    stage = "creating the repo"
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
        if private and not api.model_info(repo_id).private:
            raise FastFormersError(
                f"{repo_id} already exists and is public, but private=True was asked: nothing was pushed. Make the "
                "repo private on the Hub first, or push to another repo id.")
        if branch != "main":
            stage = f"creating branch {branch}"
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        stage = "uploading large files"
        api.preupload_lfs_files(repo_id, additions=ops, revision=branch)
        stage = "committing"
        return api.create_commit(repo_id, operations=ops, commit_message=message, revision=branch)
    except (HfHubHTTPError, *_network_errors()) as e:
        raise _push_error(e, stage, repo_id, branch, ops, token, model_dir) from e
    except RuntimeError as e:  # huggingface_hub wraps a failed LFS upload: "Error while uploading '<file>' ..."
        cause = e.__cause__ if isinstance(e.__cause__, (HfHubHTTPError, *_network_errors())) else None
        if cause is None and "uploading" not in str(e):
            raise
        raise _push_error(cause or e, stage, repo_id, branch, ops, token, model_dir) from e


def compression_record_from_hub(repo_id: str, revision: str | None = None, token: str | None = None,
                                subfolder: str | None = None) -> dict[str, Any]:
    """The compression record (shape + recipe) of a model on the Hub, read from its ``config.json`` alone."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    where = f"{repo_id}{'@' + revision if revision else ''} at {_endpoint()}"
    try:
        path = hf_hub_download(repo_id, "config.json", subfolder=subfolder, revision=revision, token=token,
                               endpoint=_endpoint())
    except RepositoryNotFoundError:
        raise FastFormersError(f"no model repo {where} (or it is private and the token cannot read it); check the "
                               "repo id, or pass token=... .") from None
    except RevisionNotFoundError:
        raise FastFormersError(f"{repo_id} has no revision {revision!r}; pass an existing branch, tag or commit.") from None
    except EntryNotFoundError:
        raise FastFormersError(f"{where} has no {subfolder + '/' if subfolder else ''}config.json; it is not a "
                               "transformers model repo.") from None
    except HfHubHTTPError as e:
        raise FastFormersError(f"could not read {where}: {e}") from None
    return compression_record(path)
