"""Getting a model ready for `run`, `chat` and `agent`: plan, ask to download (or not), download
with progress, load with a spinner. The questions and the output are here; the work is in
`loader` and `download`."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..errors import ExitCode, QwenlocalError
from ..models.catalog import ModelSpec, QuantFile
from ..models.hardware import Choice
from ..models.loader import Loaded, load, not_downloaded, plan, projector_for, projector_not_downloaded
from ..terminal import Terminal


def open_model(term: Terminal, settings: Settings, vision: bool = False) -> Loaded:
    """The model, and with `vision` its projector (both asked for and fetched before loading)."""
    choice, path, label, mmproj = locate(term, settings, vision)
    with term.loading("Loading model"):
        loaded = load(settings, choice, path, label, mmproj)
    for message in loaded.warnings:
        term.warn(message)
    return loaded


def projector_path(term: Terminal, settings: Settings, choice) -> Path:
    """The model's projector on disk: found, or asked for and downloaded (the consent rules of
    models: a question on a terminal, --pull in a script, else exit 5 with the command)."""
    projector, path = projector_for(settings, choice)
    if path is None:
        if not _may_download(term, choice, settings.pull, projector):
            raise projector_not_downloaded(choice, projector)
        path = fetch(term, choice.model, projector)
    return path


def ensure_vision(term: Terminal, settings: Settings, loaded: Loaded) -> None:
    """Give a loaded model its projector, the first time an image is used (chat)."""
    if loaded.engine.vision is not None:
        return
    path = projector_path(term, settings, loaded.choice)
    with term.loading("Loading the vision projector"):
        loaded.engine.attach_projector(path)


def open_model_or_server(
    term: Terminal, settings: Settings, server: str | None, use: bool, vision: bool = False
) -> Loaded:
    """A running `qwenlocal serve` of the same model file if there is one (see client.py), else the
    model loaded here. `server`: its URL (--server); `use`: False for --no-server. Images are
    read here: the server takes text."""
    if use and not vision:
        choice, path, label = plan(settings)
        if path is not None:
            from ..engine.remote import RemoteEngine, find
            from ..models import catalog

            connection = find(server, path)
            if connection is not None:
                spec = catalog.load().models.get(connection.spec or "")
                return Loaded(RemoteEngine(connection), choice, spec, f"{label} (server)")  # type: ignore[arg-type]
    return open_model(term, settings, vision)


def locate(term: Terminal, settings: Settings, vision: bool = False) -> tuple[Choice, Path, str, Path | None]:
    """What to load, its file and (with `vision`) its projector's, downloaded first if need be
    (and allowed). The projector is asked for first: `pull SIZE --vision`, which its refusal
    names, fetches the model too."""
    choice, path, label = plan(settings, vision=vision)
    mmproj = projector_path(term, settings, choice) if vision else None
    if path is None:
        if not _may_download(term, choice, settings.pull):
            raise not_downloaded(choice)
        path = fetch(term, choice.model, choice.quant)
    return choice, path, label, mmproj


def _may_download(term: Terminal, choice, allow: bool, quant=None) -> bool:
    """First use of a model: --pull downloads it; on a terminal the user is asked."""
    from ..models import download

    if allow or not term.can_ask or download.offline():
        return allow
    quant = quant or choice.quant
    what = "its vision projector" if quant.quant == "MMPROJ" else quant.quant
    question = (
        f"{choice.model.display} {what} ({quant.bytes / 1e9:.1f} GB) is not downloaded. Download it now?"
    )
    return term.confirm(question, default=True)


def fetch(term: Terminal, spec: ModelSpec, quant: QuantFile) -> Path:
    """Download a catalog file (or an alternate publisher's copy if the default is gone)."""
    from ..models import download

    local = download.find_local(spec, quant)
    if local:
        return local
    last: QwenlocalError | None = None
    for candidate in download.sources(spec, quant):
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
