"""``goldenhour models ...``: sign model releases and offer them to the edges.

The operator makes a key pair once (``keygen``) and keeps the private key
offline; ``sign`` turns a manifest entry into a signed release file,
``publish`` puts it (with its files) into the hub's offer folder, and
``verify`` checks a release against the public key that the edges trust.
See ``docs/model-updates.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shared.errors import GoldenhourError
from shared.manifest import DEFAULT_MODELS_DIR, load_manifest, verified_path
from shared.signing import (
    key_id,
    load_private_key,
    load_public_key,
    load_release,
    save_release,
    sign_release,
    verify_release,
    write_keypair,
)

app = typer.Typer(help="Signed model updates: keys, releases and the hub's offer.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


def _fail(message: str, error: Exception) -> typer.Exit:
    err_console.print(f"[red]{message}:[/] {error}")
    return typer.Exit(1)


@app.command()
def keygen(
    out: Annotated[Path, typer.Option(help="Folder for <name>.key (private, mode 0600) and <name>.pub.")],
    name: Annotated[str, typer.Option(help="File name stem of the key pair.")] = "model-signing",
    force: Annotated[bool, typer.Option(help="Replace an existing key pair.")] = False,
) -> None:
    """Make an ed25519 key pair for signing model releases. Keep the private key
    offline; give the public key to every edge (GOLDENHOUR_EDGE_MODEL_UPDATE__PUBLIC_KEY)."""
    try:
        private, public = write_keypair(out, name, overwrite=force)
    except GoldenhourError as exc:
        raise _fail("no key written", exc) from exc
    console.print(f"private key: {private} (mode 0600: keep it offline)")
    console.print(f"public key:  {public} (key id {key_id(load_public_key(public))})")


@app.command()
def sign(
    key: Annotated[Path, typer.Option(help="The private key (PEM or raw base64).")],
    model: Annotated[str, typer.Option(help="Model name in the manifest.")],
    version: Annotated[str, typer.Option(help="Model version in the manifest.")],
    manifest: Annotated[Path, typer.Option(help="The manifest that lists the model.")]
    = DEFAULT_MODELS_DIR / "manifest.json",
    out: Annotated[Path | None, typer.Option(
        help="Release file (default: <models>/<name>/<version>/release.json).")] = None,
) -> None:
    """Sign one manifest entry (every file's sha256 and size) into a release file,
    after checking that the files on disk match the entry."""
    models_dir = manifest.parent
    try:
        entry = load_manifest(models_dir).find(model, version)
        for file in entry.files:
            verified_path(models_dir, entry, file)
        release = sign_release([entry], load_private_key(key))
    except GoldenhourError as exc:
        raise _fail("not signed", exc) from exc
    target = out or models_dir / entry.name / entry.version / "release.json"
    save_release(release, target)
    console.print(f"signed {release.label} with key {release.key_id}: {target}")


def _models_dir_for(release_path: Path, name: str, version: str) -> Path:
    """The models folder of a release kept at ``<models>/<name>/<version>/release.json``."""
    folder = release_path.resolve().parent
    if folder.name == version and folder.parent.name == name:
        return folder.parent.parent
    return DEFAULT_MODELS_DIR


@app.command()
def publish(
    release: Annotated[Path, typer.Option(help="The release file that `sign` wrote.")],
    hub_dir: Annotated[Path, typer.Option(help="The hub's offer folder (GOLDENHOUR_HUB_MODEL_OFFER_DIR).")],
    models_dir: Annotated[Path | None, typer.Option(
        help="Where the release's files are (default: the models folder holding the release).")] = None,
    public_key: Annotated[Path | None, typer.Option(
        help="Also check the signature against this public key before publishing.")] = None,
) -> None:
    """Offer a release to the edges: copy it and its files into the hub's offer
    folder, each file checked against its sha256 first."""
    from hospital_hub.model_updates import publish_release

    try:
        parsed = load_release(release)
        first = parsed.models()[0]
        source = models_dir or _models_dir_for(release, first.name, first.version)
        key = load_public_key(public_key) if public_key is not None else None
        published = publish_release(release, source, hub_dir, key)
    except GoldenhourError as exc:
        raise _fail("not published", exc) from exc
    console.print(f"offering {published.label} (key {published.key_id}) from {hub_dir}")


@app.command()
def verify(
    release: Annotated[Path, typer.Option(help="The release file.")],
    public_key: Annotated[Path, typer.Option(help="The public key the edges trust.")],
    models_dir: Annotated[Path | None, typer.Option(
        help="Also check the files' sha256 in this models folder.")] = None,
) -> None:
    """Check a release's signature (and, with --models-dir, its files)."""
    try:
        entries = verify_release(load_release(release), load_public_key(public_key))
        for entry in entries:
            for file in entry.files if models_dir is not None else []:
                verified_path(models_dir, entry, file)
    except GoldenhourError as exc:
        raise _fail("does not verify", exc) from exc
    for entry in entries:
        console.print(f"{entry.key}: signature good ({len(entry.files)} files"
                      f"{', checked' if models_dir is not None else ''})")
