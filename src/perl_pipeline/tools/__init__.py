"""The tools around the pipelines: the benchmark (`bench`), the rehearsal (`rehearse`), sweeps
(`sweep`) and the paper's tables and figures (`paper`). Users run them by their command names,
``python -m perl_pipeline.<tool>``."""
