"""MkDocs hook: the Configuration reference page, generated from the config classes at build time.

Every key's default and reason is written once, in the config classes; this page prints them as
`srl-rlvr config check` does, so the reference cannot drift from the code.
"""

from mkdocs.structure.files import File, Files

from srl_rlvr.config import Config, dump_config

PAGE = """# Configuration reference

Every key with its default and the reason for it, generated from the config classes when the
guide is built. `srl-rlvr config check` prints the same; `srl-rlvr config check CFG` prints your
config resolved. How the config works: [Configuration](configuration.md).

```yaml
{yaml}```
"""


def on_files(files: Files, config) -> Files:
    text = PAGE.format(yaml=dump_config(Config(), described=True))
    files.append(File.generated(config, "config-reference.md", content=text))
    return files
