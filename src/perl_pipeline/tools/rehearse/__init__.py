"""The full-scale rehearsal: the real protocol's volume, end to end, measured.

    python -m perl_pipeline.rehearse --fraction 1.0 --out /scratch/rehearsal [--stages data|all]
        [--image-size tiny|real]

writes (or reuses) a replica of all 15 benchmarks at their true class counts and ``fraction`` of
their split sizes (:func:`~perl_pipeline.toy.miniature.write_replica`), runs the real Kedro
stages on it (:mod:`.run`), measures each (:mod:`.measure`) and writes ``rehearsal.json`` and
``rehearsal.md`` with the full protocol's time projected for ViT-B/16 on one GPU
(:mod:`.projection`).
"""
