"""The application side of a trial: cognitive architectures as DAGs, output formats, repair, semantic cache."""
