"""MkDocs hook: publish the repository files the Results page needs from outside docs/.

docs/results.md includes the root BENCHMARKS.md (pymdownx.snippets), so the log keeps one copy; its
plots live in benchmarks/results/. Adding them here, at the same relative paths, lets the included
page's image links resolve, so `mkdocs build --strict` still fails on a link that is really broken.
"""

from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]


def on_files(files: Files, config) -> Files:
    for image in sorted((ROOT / "benchmarks" / "results").glob("*.png")):
        uri = image.relative_to(ROOT).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(image)))
    return files
