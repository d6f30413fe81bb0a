"""Region adapters: one per local case system, discovered through the `tongban.adapters`
entry-point group. The interface, the REST/JSON and SOAP/XML adapters, the reference local case
system and the contract kit arrive with the adapters issue; nothing here is wired in yet.
"""
