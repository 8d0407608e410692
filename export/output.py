"""Write, part two: where an export's folder goes, without ever overwriting what is not ours.

The export is built in a fresh sibling of the output (`.<name>.partial-<random>`) and moved into place
only when complete; a previous export is moved aside, the new one renamed into place, then the old one
deleted. Until the first rename the previous export is left as it was, whatever happens (a SIGKILL
included); a kill between the two renames leaves it whole at `.<name>.old-<random>`, to be renamed back. `--output` is refused before any work when it is the source folder, inside it or holds it,
or when it holds files that are not a previous export of this tool.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from export.errors import OutputFolderError
from runtime.errors import ModelFolderError
from runtime.manifest import load_manifest

log = logging.getLogger("export")

FAILED_SUFFIX = ".failed"  # where a failed validation goes when the output already holds an export


def is_previous_export(folder: Path) -> bool:
    """`folder` holds a manifest the runtime reads (`splade.json`, or `document/splade.json` for a Router export)."""
    for candidate in (folder, folder / "document"):
        try:
            load_manifest(candidate, verify=False)
            return True
        except (ModelFolderError, OSError):
            continue
    return False


# What an export writes into its folder (the manifest, the graph or static weights, what `save_pretrained`
# writes for a tokenizer); a Router export holds `document/` and `query/`, each an export.
EXPORT_FILES = ("splade.json", "model.onnx*", "*.npy", "tokenizer*", "special_tokens_map.json", "added_tokens.json",
                "vocab.*", "merges.txt", "*.model", "chat_template*")
ROUTE_FOLDERS = ("document", "query")


def not_ours(folder: Path) -> list[str]:
    """Names in a previous export's folder that no export writes: replacing the folder would delete them."""
    extra = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.is_symlink() and entry.name in ROUTE_FOLDERS:
            extra += [f"{entry.name}/{name}" for name in not_ours(entry)]
        elif entry.is_symlink() or not entry.is_file() or not any(fnmatch.fnmatch(entry.name, p) for p in EXPORT_FILES):
            extra.append(entry.name + ("/" if entry.is_dir() else ""))
    return extra


def listing(folder: Path, shown: int = 5) -> str:
    """A few of the names in `folder`, for a message."""
    names = sorted(os.listdir(folder))
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _occupied(folder: Path) -> bool:
    return folder.is_symlink() or (folder.exists() and (not folder.is_dir() or any(folder.iterdir())))


def failed_sibling(out: Path) -> Path:
    return out.with_name(out.name + FAILED_SUFFIX)


def _refuse_foreign(folder: Path, shown: Path, what: str) -> None:
    if not _occupied(folder):
        return
    if not folder.is_dir():
        raise OutputFolderError(f"{shown}: exists and is not a folder; {what} must be a folder (new, empty, or a "
                                "previous export, which is replaced)")
    if not is_previous_export(folder):
        raise OutputFolderError(f"{shown}: {what} holds files that are not a previous export ({listing(folder)}; no "
                                "splade.json the runtime reads); nothing was written. Choose a new or empty folder, "
                                "or remove these files first")
    extra = not_ours(folder)
    if extra:
        more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
        raise OutputFolderError(f"{shown}: {what} holds a previous export and other files ({', '.join(extra[:5])}{more}) "
                                "that replacing it would delete; nothing was written. Move them out first, or "
                                "choose another folder")


def check_output(out: Path, source: Path | None) -> None:
    """Refuse an output that would overwrite what is not ours, before any work.

    Raises:
        OutputFolderError: `out` is the source folder, inside it or holds it; or it (or, where a failed
            validation would go, `<out>.failed`) exists and holds files that are not a previous export.
    """
    real = out.resolve()
    if source is not None:
        src = source.resolve()
        if real == src:
            raise OutputFolderError(f"{out}: --output is the source model folder ({listing(src)}); nothing was "
                                    "written. Choose another folder")
        if src in real.parents:
            raise OutputFolderError(f"{out}: --output is inside the source model folder {src} ({listing(src)}); "
                                    "nothing was written. Choose a folder outside it")
        if real in src.parents:
            raise OutputFolderError(f"{out}: --output holds the source model folder {src}; replacing it would delete "
                                    "the source; nothing was written. Choose another folder")
    _refuse_foreign(real, out, "--output")
    if _occupied(real):  # a failed validation would go beside it
        _refuse_foreign(failed_sibling(real), failed_sibling(out), "the folder a failed validation is written to")


def _swap_into(new: Path, dest: Path) -> bool:
    """Rename `new` to `dest`; a previous export there is moved aside first and deleted after. True if one was."""
    if dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir()):
        dest.rmdir()
    if not dest.exists():
        os.rename(new, dest)
        return False
    _refuse_foreign(dest, dest, "the destination")  # it changed since the check before any work
    aside = dest.with_name(f".{dest.name}.old-{secrets.token_hex(4)}")
    os.rename(dest, aside)
    try:
        os.rename(new, dest)
    except BaseException:
        os.rename(aside, dest)
        raise
    shutil.rmtree(aside, ignore_errors=True)
    if aside.exists():
        log.warning("%s: could not delete the previous export moved there; delete it by hand", aside)
    return True


class Staging:
    """A fresh sibling of the output to build the export in, published (moved into place) only when complete.

    Left by exception (other than after `publish`), it is deleted; a killed process leaves it behind,
    as `.<name>.partial-<random>` beside the output, which may be deleted.
    """

    def __init__(self, out: Path):
        self.out = out
        self.real = out.resolve()
        self.real.parent.mkdir(parents=True, exist_ok=True)
        self.root: Path | None = Path(tempfile.mkdtemp(prefix=f".{self.real.name}.partial-", dir=self.real.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.root, 0o777 & ~umask)  # mkdtemp's 0700 would make the published folder its owner's alone
        self.work = self.root / ".work"  # traces and fused fp32 graphs: on the output's disk, deleted at publish

    def folder(self, name: str) -> Path:
        """Where target `name` ("" for the output itself) is written inside the staging folder."""
        assert self.root is not None, "already published"
        folder = self.root / name if name else self.root
        folder.mkdir(exist_ok=True)
        return folder

    def scratch(self) -> Path:
        """An empty work folder (the previous target's, emptied) beside the export, never published."""
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir()
        return self.work

    def publish(self, *, failed: bool = False) -> tuple[Path, bool]:
        """Move the export into place; returns where (as the caller named it) and whether an export was replaced.

        A failed validation goes to the output only when it is absent or empty, else to `<output>.failed`,
        leaving the export in the output as it was.
        """
        assert self.root is not None, "already published"
        shutil.rmtree(self.work, ignore_errors=True)
        dest, shown = self.real, self.out
        if failed and _occupied(self.real):
            dest, shown = failed_sibling(self.real), failed_sibling(self.out)
        replaced = _swap_into(self.root, dest)
        self.root = None
        return shown, replaced

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
