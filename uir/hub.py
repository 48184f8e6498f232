"""The Hugging Face Hub: finding out at once whether a Hub id can be loaded, and sharing
(model cards and folder uploads for pipelines and experts)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

#: how long :func:`hub_reachable` waits for the Hub to answer
HUB_PROBE_S = 1.0


def hub_reachable(timeout: float = HUB_PROBE_S) -> bool:
    """Whether the Hub endpoint (``HF_ENDPOINT``) accepts a connection within ``timeout``
    seconds, name lookup included."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    answered: list[bool] = []

    def probe():
        try:
            socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
            answered.append(True)
        except OSError:
            answered.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.25)
    return bool(answered and answered[0])


def _cached(repo_id: str) -> bool:
    from huggingface_hub import constants

    snapshots = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "snapshots"
    return snapshots.is_dir() and any(snapshots.iterdir())


def looks_local(name: str) -> bool:
    """Whether a model name is meant as a local path, not a Hub id (``owner/name``): it exists,
    is absolute, starts with ``.`` or ``~``, or has more than one ``/``."""
    return Path(name).exists() or name.startswith((".", "~", "/")) or name.count("/") > 1 or "\\" in name


def require_hub(name: str, what: str = "model") -> None:
    """Return when ``name`` is a local path, is in the Hugging Face cache, or the Hub answers;
    else an ``OSError`` with one line, within about a second (diffusers and huggingface_hub
    retry for 30-60 s offline, then blame a missing config.json)."""
    from huggingface_hub import constants

    name = str(name)
    if Path(name).exists() or _cached(name):
        return
    if looks_local(name):
        raise OSError(f"{name}: no such {what} folder")
    if constants.HF_HUB_OFFLINE:
        raise OSError(f"cannot reach the Hub for {what} {name} (HF_HUB_OFFLINE is set); pass a local folder, or "
                      "unset HF_HUB_OFFLINE when online")
    if not hub_reachable():
        raise OSError(f"cannot reach the Hub ({constants.ENDPOINT}) for {what} {name}; pass a local folder, or "
                      "try again when online")

CARD_FILE = "README.md"


def write_model_card(directory, title: str, base_model: str, experts: list[str], description: str) -> Path:
    """Write a model card (``README.md`` with Hub metadata) into a folder about to be shared."""
    tags = ["uir", "image-restoration", "lora", "diffusers"]
    header = ["---", "library_name: diffusers", "pipeline_tag: image-to-image", "tags:"]
    header += [f"- {tag}" for tag in tags]
    if base_model:
        header.append(f"base_model: {base_model}")
    header.append("---")
    lines = [
        *header, "", f"# {title}", "", description, "",
        f"- base model: `{base_model or 'not recorded'}`",
        f"- experts: {', '.join(f'`{e}`' for e in experts) or 'none'}",
        "", "Made with [uir](https://pypi.org/project/uir/). Load it with:", "", "```python",
    ]
    lines += (["from uir.lora import LoRAExpert", "expert = LoRAExpert.load(\"REPO_ID\")"] if title.startswith("LoRA expert")
              else ["from diffusers import DiffusionPipeline",
                    "pipe = DiffusionPipeline.from_pretrained(\"REPO_ID\", trust_remote_code=True)"])
    lines += ["```", ""]
    path = Path(directory) / CARD_FILE
    path.write_text("\n".join(lines))
    return path


def upload_folder(directory, repo_id: str, token: str | None = None, private: bool | None = None,
                  commit_message: str = "Upload with uir") -> str:
    """Create ``repo_id`` if needed and upload the folder; returns the repo id."""
    from huggingface_hub import create_repo
    from huggingface_hub import upload_folder as hub_upload

    repo_id = create_repo(repo_id, exist_ok=True, private=private, token=token).repo_id
    hub_upload(repo_id=repo_id, folder_path=str(directory), token=token, commit_message=commit_message)
    return repo_id
