"""Front end: grammar, parser, syntax tree, and elaboration to the IR."""
