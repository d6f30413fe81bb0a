"""The `tongban` command line for operators, alliance admins and member admins."""
