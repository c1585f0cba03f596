"""The IR: typed instructions, the dataflow graph and the checker."""
