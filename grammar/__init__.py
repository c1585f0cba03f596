"""The .tp grammar (``tp.lark``), installed as the package ``tensorprog.grammar``."""
