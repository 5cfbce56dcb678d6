"""Getting a model ready for `run`, `chat`, `agent` and `serve`, in one straight line: plan once
(models/loader.py), use a running server if one serves this very file, ask once for every file
that is missing, fetch them with progress, load with a spinner. The questions and the output are
here; the work is in `models`."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import ExitCode, QwenlocalError
from ..models.catalog import ModelSpec, QuantFile
from ..models.loader import Loaded, Plan, load, plan, projector_for
from ..terminal import Terminal


def open_model(
    term: Terminal,
    settings: Settings,
    vision: bool = False,
    server: str | None = None,
    use_server: bool = False,
) -> Loaded:
    """The model (with `vision`, its projector too), or with `use_server` a running `qwenlocal
    serve` of the same model file if there is one (`server`: its URL, from --server). Images are
    read here: the server takes text."""
    planned = plan(settings, vision=vision)
    if use_server and not vision and not planned.missing():
        remote = _served(planned, server)
        if remote is not None:
            return remote
    planned = ready(term, settings, planned)
    with term.loading("Loading model"):
        loaded = load(settings, planned)
    for message in loaded.warnings:
        term.warn(message)
    return loaded


def ready(term: Terminal, settings: Settings, planned: Plan) -> Plan:
    """The plan with every file on disk: what is missing is asked for once (a question on a
    terminal, --pull in a script, else exit 5 naming the command) and fetched."""
    missing = planned.missing()
    if missing and not _may_download(term, planned.choice.model, missing, settings.pull):
        raise planned.not_downloaded()
    for file in missing:
        planned = planned.with_file(file, fetch(term, planned.choice.model, file))
    return planned


def ensure_vision(term: Terminal, settings: Settings, loaded: Loaded) -> None:
    """Give a loaded model its projector, the first time an image is used (chat)."""
    if loaded.engine.can_see:
        return
    projector, path = projector_for(settings, loaded.choice)
    if path is None:
        planned = Plan(loaded.choice, loaded.label, loaded.engine.path, projector)
        path = ready(term, settings, planned).mmproj
    with term.loading("Loading the vision projector"):
        loaded.engine.attach_projector(path)


def _served(planned: Plan, url: str | None) -> Loaded | None:
    from ..engine.remote import RemoteEngine, find
    from ..models.catalog import load as catalog

    connection = find(url, planned.path)
    if connection is None:
        return None
    spec = catalog().models.get(connection.spec or "")
    return Loaded(RemoteEngine(connection, planned.path), planned.choice, spec, f"{planned.label} (server)")


def _may_download(term: Terminal, spec: ModelSpec, files: list[QuantFile], allow: bool) -> bool:
    """First use of a model: --pull downloads it; on a terminal the user is asked, once."""
    from ..models.store import offline

    if allow or not term.can_ask or offline():
        return allow
    what = " and ".join("its vision projector" if f.quant == "MMPROJ" else f.quant for f in files)
    size = sum(f.bytes for f in files) / 1e9
    verb = "is" if len(files) == 1 else "are"
    pronoun = "it" if len(files) == 1 else "them"
    return term.confirm(
        f"{spec.display} {what} ({size:.1f} GB) {verb} not downloaded. Download {pronoun} now?", default=True
    )


def fetch(term: Terminal, spec: ModelSpec, quant: QuantFile) -> Path:
    """Download a catalog file (or an alternate publisher's copy if the default is gone)."""
    from ..models import download, store

    local = store.find_local(spec, quant)
    if local:
        return local
    last: QwenlocalError | None = None
    for candidate in store.sources(spec, quant):
        progress = term.progress(f"{candidate.repo}/{candidate.file}")
        verify = term.progress(f"verifying {candidate.file}", plain_every=30.0)
        try:
            return download.pull(candidate, progress=progress, verifying=verify)
        except QwenlocalError as error:
            if error.code != ExitCode.HUB_NOT_FOUND:
                raise
            last = error
            term.warn(f"{candidate.repo}/{candidate.file} is not on the hub; trying the next source")
        finally:
            progress.close()
            verify.close()
    assert last is not None
    raise last
