from autotune.cli import app

app()
