"""The contract kit any region adapter must pass (see `adapters.testing.contract`), and a driver
and runner for the reference local case system (`adapters.testing.reference`)."""

from adapters.testing.contract import (
    MALFORMED,
    ContractFailure,
    LocalDriver,
    LocalView,
    run_contract,
    sample_case,
)

__all__ = ["MALFORMED", "ContractFailure", "LocalDriver", "LocalView", "run_contract",
           "sample_case"]
