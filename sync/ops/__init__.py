"""Operations on top of the pipeline: the daemon, health and metrics, status and reports."""
