"""mkdocs hook: the nav's Cookbook entry becomes a section with one page per generated example page,
so that examples added to examples/ appear in the navigation without editing mkdocs.yml."""
from pathlib import Path

COOKBOOK_INDEX = "cookbook/index.md"


def on_config(config):
    pages = sorted(p.name for p in (Path(config.docs_dir) / "cookbook").glob("*.md") if p.name != "index.md")
    for k, entry in enumerate(config.nav or []):
        if isinstance(entry, dict) and list(entry.values()) == [COOKBOOK_INDEX]:
            title = next(iter(entry))
            config.nav[k] = {title: [{"Overview": COOKBOOK_INDEX}] + [f"cookbook/{p}" for p in pages]}
    return config
