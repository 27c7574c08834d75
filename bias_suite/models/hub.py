"""The Hugging Face hub, asked once and with a timeout, so a model load never hangs on the network.

:func:`hub_route` asks the hub about a hub id once (connect and answer limited to a few seconds) and pins
the load to the commit it names; when the hub does not answer, only the local Hugging Face cache is used.
:func:`hub_timeouts` limits the metadata requests transformers makes afterwards.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import huggingface_hub
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from bias_suite.errors import ModelNotFoundError

HUB_TIMEOUT_SECONDS = 5.0  # limit on connecting to the hub and on each wait for its answer, per request
OFFLINE_HINT = "Without network access, download it elsewhere and pass the local directory"


@dataclass(frozen=True)
class HubRoute:
    """How the files of a spec are reached.

    revision: what to load; for a hub id that answered, the commit hash it named (so no later call has to
        ask the hub again, and every file comes from the same commit).
    cache_only: the hub did not answer (or HF_HUB_OFFLINE is set): use the local Hugging Face cache only.
    unreachable: why the hub was not used, for messages.
    """

    revision: str | None
    cache_only: bool = False
    unreachable: str | None = None



def hub_route(spec: str, on_hub: bool, revision: str | None, timeout_seconds: float) -> HubRoute:
    """Ask the hub about a hub id once, waiting at most ``timeout_seconds`` to connect and for the answer.

    A hub that answers pins the load to the commit it names. One that does not answer (refused, silent,
    a 5xx, or HF_HUB_OFFLINE set) routes the load to the local Hugging Face cache only, so nothing later
    waits on it: transformers' own calls would otherwise retry for half a minute, or, for some requests,
    wait forever. A hub that answers "no such repository / revision" raises :class:`ModelNotFoundError`.
    Local directories and aliases never touch the network.
    """
    if not on_hub:
        return HubRoute(revision)
    endpoint = huggingface_hub.constants.ENDPOINT
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return HubRoute(revision, cache_only=True, unreachable="HF_HUB_OFFLINE is set")
    try:
        info = huggingface_hub.HfApi(endpoint=endpoint).model_info(spec, revision=revision, timeout=timeout_seconds)
    except GatedRepoError as error:
        raise ModelNotFoundError(
            f"{spec}: the model is gated on the hub at {endpoint} ({first_line(error)}); accept its conditions on "
            "its hub page, then log in (hf auth login) or set HF_TOKEN"
        ) from error
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        what = f"revision {revision!r}" if isinstance(error, RevisionNotFoundError) else "repository"
        raise ModelNotFoundError(
            f"{spec}: the hub at {endpoint} has no such {what} ({first_line(error)}); check the id and "
            "revision, and for a private or gated model log in first (hf auth login)"
        ) from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status is not None and status < 500:
            raise ModelNotFoundError(f"{spec}: the hub at {endpoint} refused it ({first_line(error)})") from error
        return HubRoute(revision, cache_only=True,
                        unreachable=f"the hub at {endpoint} failed ({first_line(error)})")
    except (OSError, *_transport_errors()) as error:
        return HubRoute(revision, cache_only=True, unreachable=(
            f"the hub at {endpoint} could not be reached within {timeout_seconds:g} s "
            f"({type(error).__name__}: {first_line(error)})"
        ))
    return HubRoute(info.sha or revision)


@contextmanager
def hub_timeouts(seconds: float) -> Iterator[None]:
    """Inside: huggingface_hub waits at most ``seconds`` for file metadata, first try and retry alike.

    Patches ``huggingface_hub.constants.HF_HUB_ETAG_TIMEOUT`` (unless the user set the HF_HUB_ETAG_TIMEOUT
    environment variable) and the 60 s timeout huggingface_hub gives a retried metadata request; restores
    both on exit. Downloads keep ``HF_HUB_DOWNLOAD_TIMEOUT`` (a per-read limit, so large files are not cut
    short). The patch is process-wide while it lasts.
    """
    from huggingface_hub import file_download

    patches: list[tuple[Any, str, Any]] = []
    if "HF_HUB_ETAG_TIMEOUT" not in os.environ:
        patches.append((huggingface_hub.constants, "HF_HUB_ETAG_TIMEOUT", seconds))
    if hasattr(file_download, "_ETAG_RETRY_TIMEOUT"):
        patches.append((file_download, "_ETAG_RETRY_TIMEOUT", seconds))
    previous = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    try:
        for owner, name, value in patches:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in previous:
            setattr(owner, name, value)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection and timeout errors of whichever HTTP client huggingface_hub uses (httpx, its fork, requests)."""
    names = {"httpx2": "TransportError", "httpx": "TransportError", "requests": "RequestException"}
    return tuple(getattr(sys.modules[module], name) for module, name in names.items() if module in sys.modules)


def hub_kwargs(route: HubRoute) -> dict[str, Any]:
    return {"revision": route.revision, "local_files_only": route.cache_only}


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def not_on_the_hub(spec: str, route: HubRoute, error: BaseException) -> ModelNotFoundError:
    if route.unreachable is not None:
        return ModelNotFoundError(
            f"{spec}: could not load from the hub ({route.unreachable}) and it is not in the local Hugging Face "
            f"cache ({huggingface_hub.constants.HF_HUB_CACHE}). {OFFLINE_HINT}"
        )
    return ModelNotFoundError(
        f"{spec}: could not load from the hub ({error.__class__.__name__}: {first_line(error)}). {OFFLINE_HINT}"
    )
