"""Region adapters: one per local case system, discovered through the `tongban.adapters`
entry-point group. `base` is the contract; `rest` and `soap` are the shipped adapters, driven by
a region's mapping file (`mapping`, examples in `examples/`); `reference` is a small local case
system to run them against; `testing` is the contract kit every adapter must pass.
"""
