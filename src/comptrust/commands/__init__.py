"""CLI command modules. Each module defines `register(app: typer.Typer) -> None`."""

COMMAND_MODULES = ["eval", "demo", "ls", "compress", "benign", "report", "sweep"]
