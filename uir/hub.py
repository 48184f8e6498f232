"""Sharing on the Hugging Face Hub: model cards and folder uploads for pipelines and experts."""

from __future__ import annotations

from pathlib import Path

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
